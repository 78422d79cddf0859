"""The seed papers' orderings ("who beats whom on which metric") as data, checked on a summary.

A `Finding` states one ordering a paper reports, with the passage it rests on; `check(summary)`
evaluates every finding on a metrics/summary.json mapping ({dataset: {model: {metric: {mean,
std, n}}}}) and says per dataset and metric whether it holds, fails or cannot be told (a model
or the metric absent). Each pairwise step of an ordering gets Welch's t-test on the seeds'
mean/std/n, with Benjamini–Hochberg across every step of the check (pipeline/significance.py),
so "holds, significant" means every step is more than seed noise.

Model names are the params' model names; the metric names are summary.json's. Papers: 001 AVAE,
002 α-GAN, 003 LSR-GAN, 004 AVAE-S (../shared/seeds/). In 004, "AVAE" is the adversarially
fine-tuned VAE, our `avae_finetune`, and "VAE" the MSE VAE it fine-tunes, our `vae_mse` (`avae` and
`vae` in params/avae_s.yaml); in 001 "AVAE" is each of `avae_xi_a`, `avae_a`, `avae_b`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pipeline.significance import TOO_FEW, Q, Stats, bh_significant, format_p, welch_p

HOLDS, FAILS, UNKNOWN = "holds", "fails", "cannot tell"
LEGEND = (f"'significant': every step of a holding ordering (or a reversed step of a failing one) passes "
          f"Welch's t-test after Benjamini–Hochberg at q = {Q:g} over all steps; '{TOO_FEW}': fewer than "
          "2 seeds on a side.")
AVAE_001 = ("avae_xi_a", "avae_a", "avae_b")  # AVAE T1: with ξ + L_Z^a, without ξ + L_Z^a, without ξ + L_Z^b
# 004's "VAE" (MSE + KL, the model its AVAE fine-tunes) and "AVAE": vae_mse / avae_finetune in the
# default params.yaml (where `vae` is 001's VAE), vae / avae in params/avae_s.yaml
AS_004 = {"vae_mse": ("vae",), "avae_finetune": ("avae",)}


@dataclass(frozen=True)
class Finding:
    """One ordering a paper reports.

    Fields: id (stable name); source (paper and table/section); passage (the numbers or words
    it rests on, from the paper); metric (the summary.json metric the paper's claim is about);
    higher_is_better (the metric's direction); order (tiers of models, best first: every model
    of a tier beats every model of the next); also (more metrics checked for the same ordering:
    the paper's other rows, or our stand-in where the paper's metric needs weights a run may
    lack); note (how the paper's claim maps onto our metric, where it is not direct); aliases
    (other names a grid may give a model of `order`, used when the grid lacks the name itself).
    """

    id: str
    source: str
    passage: str
    metric: str
    higher_is_better: bool
    order: tuple[tuple[str, ...], ...]
    also: tuple[str, ...] = ()
    note: str = ""
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(m for tier in self.order for m in tier)

    def on(self, models: dict) -> "Finding":
        """This finding with each model named as the grid `models` names it: the model's own
        name when the grid holds it, else the first of its aliases the grid holds."""
        def named(m: str) -> str:
            return next((n for n in (m, *self.aliases.get(m, ())) if n in models), m)
        return replace(self, order=tuple(tuple(named(m) for m in tier) for tier in self.order))

    def claim(self, metric: str | None = None) -> str:
        """'mse: vae < {avae_xi_a, avae_a, avae_b} < vae_gan < bigan' (values ascending)."""
        tiers = [t[0] if len(t) == 1 else "{" + ", ".join(t) + "}" for t in self.order]
        return f"{metric or self.metric}: " + " < ".join(reversed(tiers) if self.higher_is_better else tiers)


def _vs_vae(model: str, label: str, numbers: str) -> Finding:
    return Finding(f"avae-t1-fid-{model}", "AVAE (001) Table 1, FID rows",
                   f"FID (lower is better), CIFAR10: {numbers}; below the VAE's on all five datasets "
                   "(Bedroom, CelebA, CIFAR10, CIFAR100, SVHN)",
                   "fid", False, (AVAE_001 if model == "avae" else (model,), ("vae",)), also=("fd_classifier",),
                   note=f"{label} generates better than the VAE. fd_classifier: the same Fréchet distance in "
                        "the dataset classifier's features, a stand-in when the Inception weights are absent")


FINDINGS: tuple[Finding, ...] = (
    Finding("avae-t1-mse", "AVAE (001) Table 1, MSE rows",
            "MSE, CIFAR10: VAE 0.05 ± 0.00; ours (all three variants) 0.09 ± 0.00; VAE/GAN 0.14 ± 0.02; "
            "BiGAN 0.31 ± 0.02 — the same order on Bedroom, CelebA, CIFAR100 and SVHN",
            "mse", False, (("vae",), AVAE_001, ("vae_gan",), ("bigan",))),
    _vs_vae("avae", "AVAE (each variant)", "VAE 136.75 ± 0.57; ours 33.65 / 33.49 / 33.67"),
    _vs_vae("gan", "GAN (DCGAN)", "VAE 136.75 ± 0.57; GAN 32.01 ± 0.41"),
    _vs_vae("vae_gan", "VAE/GAN", "VAE 136.75 ± 0.57; VAE/GAN 39.04 ± 2.42"),
    _vs_vae("bigan", "BiGAN", "VAE 136.75 ± 0.57; BiGAN 34.61 ± 1.29"),
    Finding("lsr-fid", "LSR-GAN (003) §2.2",
            "for images seeded with random latent variable (i.e. z ~ N(0, I)) the FID score for the VAE is "
            "138.6 while for the LSR-GAN it is 47.4 (CIFAR-10)",
            "fid", False, (("lsr_gan",), ("vae",)), also=("fd_classifier",),
            note="fd_classifier: stand-in when the Inception weights are absent"),
    Finding("lsr-fid-seeded", "LSR-GAN (003) §2.2",
            "For images seeded from a testing example the VAE achieved a score of 89.8 while LSR-GAN achieved "
            "a score of 44.1 (FID, CIFAR-10)",
            "fid_seeded", False, (("lsr_gan",), ("vae",))),
    Finding("lsr-sharpness", "LSR-GAN (003) §2.2",
            "The LSR-GAN can get sharper reconstruction images than VAE ... luminance-normalised Laplacian "
            "(San Pedro and Siersdorfer, 2009, Section 3.1.2). For the reconstructed images from the VAE we "
            "obtained a measure of 0.17 ± 0.03 while for the LSR-GAN we obtain 0.28 ± 0.08",
            "sharpness_norm_laplace_recon", True, (("lsr_gan",), ("vae",)),
            note="measured on images generated from test-example latents, i.e. reconstructions (§2.2), "
                 "not on samples from the prior"),
    Finding("avae-s-fid", "AVAE-S (004) Tables II and III, FID rows",
            "FID - final average pooling (d=2048): VAE 45.4467, AVAE 44.3741, VAE-S 40.3900, AVAE-S 38.4775; "
            "first max pooling (d=64): 0.6911 / 0.6370 / 0.5650 / 0.5224; second max pooling (d=192): "
            "11.2447 / 10.1863 / 8.9121 / 8.2571 (CelebA)",
            "fid", False, (("avae_s",), ("vae_s",), ("avae_finetune",), ("vae_mse",)),
            also=("fid_64", "fid_192", "fd_classifier"), aliases=AS_004,
            note="VAE-S beats the VAE and AVAE-S beats AVAE, and the whole chain holds at d = 2048, 64 and 192; "
                 "not at d = 768 (pre-aux classifier: 1.0433 / 1.0433 / 1.0367 / 1.0521), left out. "
                 "fd_classifier: stand-in when the Inception weights are absent"),
    Finding("avae-s-sharpness", "AVAE-S (004) Table III",
            "Sharpness (Laplace): Ground Truth 0.112015, VAE 0.026969, AVAE 0.031597, VAE-S 0.038958, "
            "AVAE-S 0.045204; 'Table III shows the average evaluation metrics of different models on the "
            "reconstructions of the validation set'",
            "sharpness_laplace_recon", True, (("avae_s",), ("vae_s",), ("avae_finetune",), ("vae_mse",)),
            aliases=AS_004,
            note="Table II repeats these values (0.0269 ± 0.0091 ... 0.0452 ± 0.0125) under a caption that "
                 "says samples; §III's text says reconstructions, so they are checked on reconstructions"),
    Finding("avae-s-mse", "AVAE-S (004) Table III",
            "Mean Squared Error: VAE 0.010207, AVAE 0.009804, VAE-S 0.009412, AVAE-S 0.009189 (CelebA "
            "validation reconstructions)",
            "mse", False, (("avae_s",), ("vae_s",), ("avae_finetune",), ("vae_mse",)), aliases=AS_004),
    Finding("avae-s-cosine", "AVAE-S (004) Table III",
            "Cosine similarity: VAE 0.978226, AVAE 0.978675, VAE-S 0.979577, AVAE-S 0.980018",
            "cosine", True, (("avae_s",), ("vae_s",), ("avae_finetune",), ("vae_mse",)), aliases=AS_004),
    Finding("alpha-gan-critic", "α-GAN (002) §6, Fig. 2",
            "ColorMNIST: WGAN-GP produces the samples rated best by this metric; CelebA: the WGAN-GP model, "
            "which produces the best results; CIFAR-10: independent critic, shown in Figure 2(c), where "
            "WGAN-GP is the best performing model (DCGAN below it on all three)",
            "indep_critic", True, (("wgan_gp",), ("gan",)),
            note="the paper compares the best runs of each model's hyper-parameter sweep"),
    Finding("alpha-gan-recon", "α-GAN (002) §6 and App. C",
            "Unlike WGAN and DCGAN, an advantage of α-GAN and AGE is the ability to reconstruct inputs. "
            "Appendix C shows that α-GAN produces better reconstructions than AGE.",
            "mse", False, (("alpha_gan",), ("age",)),
            note="the paper shows this visually (App. C, Figs. 8-9: CelebA, CIFAR-10 training "
                 "reconstructions) without a number; mse on test reconstructions is our measure of it"),
)


@dataclass(frozen=True)
class Step:
    """One pairwise comparison of an ordering: `better` should beat `worse` on the metric."""

    better: str
    worse: str
    better_stats: Stats
    worse_stats: Stats
    holds: bool
    p: float | None  # Welch's t-test; None: n too small to tell
    significant: bool = False  # survives Benjamini–Hochberg across the whole check

    def text(self) -> str:
        mark = "✓" if self.holds else "✗"
        return (f"{self.better} {self.better_stats.mean:.4g} vs {self.worse} {self.worse_stats.mean:.4g} {mark} "
                f"(p {format_p(self.p, self.significant)})")


@dataclass(frozen=True)
class Result:
    """A finding on one dataset and metric: verdict holds / fails / cannot tell; steps; reason when unknown."""

    finding: Finding
    dataset: str
    metric: str
    verdict: str
    steps: tuple[Step, ...] = ()
    reason: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return self.finding.id, self.dataset, self.metric

    @property
    def significance(self) -> str:
        """'significant' when every step (holds) or some reversed step (fails) survives BH; else why not."""
        if self.verdict == UNKNOWN:
            return ""
        steps = self.steps if self.verdict == HOLDS else [s for s in self.steps if not s.holds]
        if (all if self.verdict == HOLDS else any)(s.significant for s in steps):
            return "significant"
        return TOO_FEW if any(s.p is None for s in steps) else "not significant"

    @property
    def label(self) -> str:
        return f"{self.verdict}, {self.significance}" if self.significance else f"{self.verdict} ({self.reason})"


def _steps(finding: Finding, values: dict[str, Stats]) -> list[Step]:
    steps = []
    for tier, next_tier in zip(finding.order, finding.order[1:]):
        for better in tier:
            for worse in next_tier:
                b, w = values[better], values[worse]
                holds = b.mean > w.mean if finding.higher_is_better else b.mean < w.mean
                steps.append(Step(better, worse, b, w, holds, welch_p(b, w)))
    return steps


def _evaluate(finding: Finding, dataset: str, models: dict, metric: str) -> Result:
    values = {m: Stats.from_summary(models.get(m, {}).get(metric)) for m in finding.models}
    absent = [m for m, s in values.items() if s is None]
    if absent:
        return Result(finding, dataset, metric, UNKNOWN, reason=f"{metric} absent for {', '.join(absent)}")
    steps = _steps(finding, values)
    return Result(finding, dataset, metric, HOLDS if all(s.holds for s in steps) else FAILS, tuple(steps))


def _mark_significant(results: list[Result], q: float) -> list[Result]:
    """Benjamini–Hochberg over every step with a p-value, across all results."""
    tested = [(i, j) for i, r in enumerate(results) for j, s in enumerate(r.steps) if s.p is not None]
    flags = dict(zip(tested, bh_significant([results[i].steps[j].p for i, j in tested], q)))
    out = []
    for i, r in enumerate(results):
        steps = tuple(replace(s, significant=flags.get((i, j), False)) for j, s in enumerate(r.steps))
        out.append(replace(r, steps=steps))
    return out


def check(summary: dict, findings: tuple[Finding, ...] = FINDINGS, q: float = Q) -> list[Result]:
    """Every finding on every dataset of `summary` that holds any of its models: one Result per
    metric present (the finding's metric and its `also` metrics), or one `cannot tell` Result on
    the finding's metric when none is present."""
    results = []
    for dataset, models in sorted(summary.items()):
        for finding in (f.on(models) for f in findings):
            if not any(m in models for m in finding.models):
                continue
            present = [m for m in (finding.metric, *finding.also)
                       if any(m in models.get(x, {}) for x in finding.models)]
            results += [_evaluate(finding, dataset, models, m) for m in present or [finding.metric]]
    return _mark_significant(results, q)


def changed(base: list[Result], head: list[Result]) -> list[tuple[Result | None, Result | None]]:
    """(base, head) pairs whose label (verdict and significance) differs; None where a side lacks it."""
    old, new = {r.key: r for r in base}, {r.key: r for r in head}
    keys = list(old) + [k for k in new if k not in old]
    return [(old.get(k), new.get(k)) for k in keys
            if (old[k].label if k in old else None) != (new[k].label if k in new else None)]


def _counts(results: list[Result]) -> str:
    n = {v: sum(r.verdict == v for r in results) for v in (HOLDS, FAILS, UNKNOWN)}
    return f"{n[HOLDS]} hold, {n[FAILS]} fail, {n[UNKNOWN]} cannot be told"


def _row(r: Result) -> str:
    steps = "; ".join(s.text() for s in r.steps) or "—"
    return f"| {r.finding.claim(r.metric)} | {r.finding.source} | {r.dataset} | {r.label} | {steps} |"


def render_markdown(results: list[Result]) -> str:
    """A Markdown table of results: ordering, source, dataset, verdict, each step with its p-value."""
    if not results:
        return "No finding applies: no dataset holds any of the findings' models.\n"
    lines = ["| ordering (paper) | source | dataset | verdict | steps: value, p (Welch) |", "|---|---|---|---|---|"]
    lines += [_row(r) for r in results]
    lines += ["", f"{_counts(results)}. " + LEGEND]
    return "\n".join(lines) + "\n"


def render_changes(base: list[Result], head: list[Result]) -> str:
    """Markdown of the orderings whose verdict changed from base to head."""
    pairs = changed(base, head)
    at_head = f"at head {_counts(head)}"
    if not pairs:
        return f"No ordering changed ({at_head}).\n"
    lines = ["| ordering (paper) | source | dataset | base | head |", "|---|---|---|---|---|"]
    for old, new in pairs:
        r = new or old
        lines.append(f"| {r.finding.claim(r.metric)} | {r.finding.source} | {r.dataset} | "
                     f"{old.label if old else '—'} | {new.label if new else '—'} |")
    lines += ["", f"{len(pairs)} changed; {at_head}. " + LEGEND]
    return "\n".join(lines) + "\n"

