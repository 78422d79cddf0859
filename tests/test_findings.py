"""pipeline/findings.py: the papers' orderings, their sources, and their check on summaries."""

import re
from pathlib import Path

import pytest
import yaml

from pipeline import findings
from pipeline.findings import FAILS, FINDINGS, HOLDS, UNKNOWN, check
from pipeline.significance import TOO_FEW

ROOT = Path(__file__).resolve().parents[1]
# the seed papers sit in ../shared/seeds beside the main checkout (one level further up from a worktree)
SEEDS = next((p for p in (ROOT.parent / "shared" / "seeds", ROOT.parents[1] / "shared" / "seeds") if p.is_dir()),
             ROOT.parent / "shared" / "seeds")


def entry(mean, std=0.0, n=5):
    return {"mean": mean, "std": std, "n": n}


def test_findings_name_real_models_and_metrics_with_their_direction():
    from pipeline.evaluate import registry

    models = set(yaml.safe_load((ROOT / "params.yaml").read_text())["grid"]["evaluate"])
    assert len({f.id for f in FINDINGS}) == len(FINDINGS)
    for f in FINDINGS:
        assert set(f.models) <= models, f.id
        assert len(f.order) >= 2 and len(set(f.models)) == len(f.models), f.id
        for metric in (f.metric, *f.also):
            assert registry.better(metric) == (registry.HIGHER if f.higher_is_better else registry.LOWER), (f.id, metric)


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the seed papers (../shared/seeds) are not beside this checkout")
def test_every_number_of_a_passage_is_in_its_paper():
    papers = {p.name[:3]: p.read_text() for p in SEEDS.glob("*.txt")}
    for f in FINDINGS:
        paper = papers[re.search(r"\((\d{3})\)", f.source).group(1)]
        for number in re.findall(r"\d+\.\d+", f.passage + " " + f.note):
            assert number in paper, (f.id, number)


def by_key(results):
    return {(r.finding.id, r.dataset, r.metric): r for r in results}


def test_the_papers_own_numbers_satisfy_their_findings():
    """Fed each paper's reported values, every finding whose models are all present holds."""
    avae_t1 = {"vae": {"mse": entry(0.05), "fid": entry(136.75, 0.57)}, "gan": {"fid": entry(32.01, 0.41)},
               "vae_gan": {"mse": entry(0.14, 0.02), "fid": entry(39.04, 2.42)},
               "bigan": {"mse": entry(0.31, 0.02), "fid": entry(34.61, 1.29)},
               "avae_xi_a": {"mse": entry(0.09), "fid": entry(33.65, 0.28)},
               "avae_a": {"mse": entry(0.09), "fid": entry(33.49, 0.50)},
               "avae_b": {"mse": entry(0.09), "fid": entry(33.67, 0.61)}}
    lsr = {"vae": {"fid": entry(138.6), "fid_seeded": entry(89.8), "sharpness_norm_laplace_recon": entry(0.17, 0.03)},
           "lsr_gan": {"fid": entry(47.4), "fid_seeded": entry(44.1),
                       "sharpness_norm_laplace_recon": entry(0.28, 0.08)}}
    t3 = dict(zip(("vae", "avae_finetune", "vae_s", "avae_s"), zip(
        (0.026969, 0.031597, 0.038958, 0.045204), (0.978226, 0.978675, 0.979577, 0.980018),
        (0.010207, 0.009804, 0.009412, 0.009189), (45.4467, 44.3741, 40.3900, 38.4775),
        (0.6911, 0.6370, 0.5650, 0.5224), (11.2447, 10.1863, 8.9121, 8.2571))))
    avae_s = {m: {"sharpness_laplace_recon": entry(v[0]), "cosine": entry(v[1]), "mse": entry(v[2]),
                  "fid": entry(v[3]), "fid_64": entry(v[4]), "fid_192": entry(v[5])} for m, v in t3.items()}
    results = check({"avae_t1": avae_t1, "lsr_gan": lsr, "avae_s": avae_s})
    complete = [r for r in results if r.verdict != UNKNOWN]
    assert all(r.verdict == HOLDS for r in complete), [r.finding.id for r in complete if r.verdict != HOLDS]
    ids = {(r.finding.id, r.dataset) for r in complete}
    assert len(ids) == len(FINDINGS) - 2  # all but α-GAN's two, which have no numbers to feed
    assert len([r for r in complete if r.finding.id == "avae-s-fid"]) == 3  # fid, fid_64, fid_192


def test_holds_fails_cannot_tell_and_significance():
    summary = {"d": {"vae": {"fd_classifier": entry(200.0, 2.0), "fid": entry(60.0, 1.0)},
                     "gan": {"fd_classifier": entry(100.0, 2.0), "fid": entry(61.0, 1.0)},
                     "lsr_gan": {"fd_classifier": entry(150.0, 2.0, n=1)}},
               "toy": {"other": {"mse": entry(1.0)}}}
    r = by_key(check(summary))
    assert not any(k[1] == "toy" for k in r)  # a dataset without any of a finding's models is not about it
    gan_fd = r[("avae-t1-fid-gan", "d", "fd_classifier")]
    assert (gan_fd.verdict, gan_fd.significance) == (HOLDS, "significant")
    gan_fid = r[("avae-t1-fid-gan", "d", "fid")]  # 61 vs 60: reversed, 1 std apart with 5 seeds
    assert gan_fid.verdict == FAILS and gan_fid.significance == "not significant" and not gan_fid.steps[0].holds
    lsr = r[("lsr-fid", "d", "fd_classifier")]
    assert (lsr.verdict, lsr.significance) == (HOLDS, TOO_FEW)
    lsr_fid = r[("lsr-fid", "d", "fid")]
    assert lsr_fid.verdict == UNKNOWN and "fid absent for lsr_gan" in lsr_fid.reason
    mse = r[("avae-t1-mse", "d", "mse")]
    assert mse.verdict == UNKNOWN and mse.reason.startswith("mse absent for vae, avae_xi_a")


def test_tiers_every_model_of_a_tier_beats_the_next():
    models = {"vae": 0.01, "avae_xi_a": 0.02, "avae_a": 0.05, "avae_b": 0.03, "vae_gan": 0.04, "bigan": 0.3}
    (r,) = [x for x in check({"d": {m: {"mse": entry(v, 0.001)} for m, v in models.items()}})
            if x.finding.id == "avae-t1-mse"]
    assert r.verdict == FAILS and len(r.steps) == 3 + 3 + 1
    assert [(s.better, s.worse) for s in r.steps if not s.holds] == [("avae_a", "vae_gan")]
    assert r.finding.claim() == "mse: vae < {avae_xi_a, avae_a, avae_b} < vae_gan < bigan"
    lsr = {f.id: f for f in FINDINGS}["lsr-sharpness"]
    assert lsr.claim() == "sharpness_norm_laplace_recon: vae < lsr_gan"  # higher is better: ascending


def test_changed_and_markdown():
    base = check({"d": {"vae": {"mse": entry(0.02, 0.001)}, "alpha_gan": {"mse": entry(0.01, 0.001)},
                        "age": {"mse": entry(0.03, 0.001)}}})
    head = check({"d": {"vae": {"mse": entry(0.02, 0.001)}, "alpha_gan": {"mse": entry(0.04, 0.001)},
                        "age": {"mse": entry(0.03, 0.001)}}})
    pairs = findings.changed(base, head)
    assert [(o.finding.id, o.label, n.label) for o, n in pairs] == [
        ("alpha-gan-recon", "holds, significant", "fails, significant")]
    md = findings.render_changes(base, head)
    assert "| mse: alpha_gan < age | α-GAN (002) §6 and App. C | d | holds, significant | fails, significant |" in md
    assert "1 changed; at head 0 hold, 1 fail" in md
    assert findings.render_changes(head, head).startswith("No ordering changed (at head 0 hold, 1 fail")
    table = findings.render_markdown(head)
    assert "alpha_gan 0.04 vs age 0.03 ✗ (p " in table and "⚠)" in table


def test_004s_vae_is_the_mse_vae_its_avae_fine_tunes_whatever_the_grid_calls_it():
    values = {"avae_s": 0.0091, "vae_s": 0.0094, "avae_finetune": 0.0098, "vae_mse": 0.0102, "vae": 0.0050}
    default_grid = {"d": {m: {"mse": entry(v)} for m, v in values.items()}}
    result = by_key(check(default_grid))[("avae-s-mse", "d", "mse")]
    assert result.finding.models == ("avae_s", "vae_s", "avae_finetune", "vae_mse")  # not 001's vae
    assert result.verdict == HOLDS  # the 001 VAE's lower mse does not enter 004's ordering
    paper_names = {"avae_s": 0.0091, "vae_s": 0.0094, "avae": 0.0098, "vae": 0.0102}  # params/avae_s.yaml
    paper_grid = {"d": {m: {"mse": entry(v)} for m, v in paper_names.items()}}
    result = by_key(check(paper_grid))[("avae-s-mse", "d", "mse")]
    assert result.finding.models == ("avae_s", "vae_s", "avae", "vae") and result.verdict == HOLDS
