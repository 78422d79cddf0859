"""`python -m pipeline diff REV [REV2]`: what a change did to the numbers, for pull requests.

Wraps `dvc metrics diff --json --all` and `dvc params diff --json` and prints Markdown: per
dataset, model and metric of metrics/summary.json the old and new mean ± std over seeds, the
change, and the two-sided p-value of Welch's t-test on the two revisions' mean/std/n. A row is
marked ⚠ only when it survives Benjamini–Hochberg at q = 0.05 across every row tested in both
revisions; with fewer than 2 seeds on a side it says "n too small to tell". A row measured in
the dataset's own feature networks (classifiers/<dataset>: fd_classifier, fd_autoencoder, ...)
is not tested when the two revisions' dvc.lock say the cell's evaluations read other networks
(trained on another CPU kind, or changed): its change is the networks' as much as the models'. Then the
params that changed. The `dvc` run is the one installed beside the running interpreter (the
project's .venv), else the one on PATH.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pipeline.significance import TOO_FEW, Q, Stats, bh_significant, format_p, welch_p

SUMMARY = "metrics/summary.json"  # dvc.yaml's metrics file: {dataset: {model: {metric: {mean, std, n}}}}
FIELDS = ("mean", "std", "n")
NETWORKS = "classifiers"  # dvc.yaml's train_classifier outputs: classifiers/<dataset>, read by every evaluation
EVALS = "evals"  # dvc.yaml's evaluate outputs: evals/<dataset>/<model>/seed<k>
OTHER_NETWORKS = "other feature networks"  # the verdict of a row not tested for that reason


@dataclass
class Change:
    """One (dataset, model, metric): its stats in each revision (None where absent), Welch's p
    (None: n too small to tell, or not tested), whether it survives Benjamini–Hochberg, and
    the feature networks it was measured in where the revisions' differ (then it is not tested)."""

    dataset: str
    model: str
    metric: str
    old: Stats | None = None
    new: Stats | None = None
    p: float | None = None
    significant: bool = False
    other_networks: str = ""  # "classifiers/<dataset>: old → new" where the revisions' networks differ

    @property
    def delta(self) -> float | None:
        return None if self.old is None or self.new is None else self.new.mean - self.old.mean

    @property
    def cell(self) -> tuple[str, str]:
        return self.dataset, self.model


def dvc_executable() -> str:
    """The dvc beside the running interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "dvc"
    if beside.is_file():
        return str(beside)
    found = shutil.which("dvc")
    if found:
        return found
    raise RuntimeError(f"dvc is neither beside the interpreter ({beside}) nor on PATH: install the project "
                       "with `make setup` and run `.venv/bin/python -m pipeline ...`")


def run_dvc(args: list[str], cwd: str | Path) -> dict:
    """Run a dvc command with --json in `cwd` and parse its output."""
    proc = subprocess.run([dvc_executable(), *args, "--json"], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`dvc {' '.join(args)}` failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return json.loads(proc.stdout or "{}")


def summaries(metrics_diff: dict) -> tuple[dict, dict]:
    """`dvc metrics diff --all --json` -> the old and the new summary.json mappings (keys
    'dataset.model.metric.field'; a model name may hold dots)."""
    old: dict = {}
    new: dict = {}
    for path, file_diff in metrics_diff.items():
        if Path(path).as_posix() != SUMMARY:
            continue
        for key, entry in file_diff.items():
            parts = key.split(".")
            if len(parts) < 4 or parts[-1] not in FIELDS:
                continue
            dataset, model, metric, field = parts[0], ".".join(parts[1:-2]), parts[-2], parts[-1]
            for side, value in ((old, entry.get("old")), (new, entry.get("new"))):
                if value is not None:
                    side.setdefault(dataset, {}).setdefault(model, {}).setdefault(metric, {})[field] = value
    return old, new


def lock_text(rev: str | None, cwd: str | Path) -> str | None:
    """dvc.lock in `cwd` at git revision `rev` (None: the workspace's); None where there is none."""
    if rev is None:
        path = Path(cwd) / "dvc.lock"
        return path.read_text() if path.is_file() else None
    proc = subprocess.run(["git", "show", f"{rev}:./dvc.lock"], cwd=cwd, capture_output=True, text=True)
    if proc.returncode == 0:
        return proc.stdout
    commit = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=cwd,
                            capture_output=True, text=True)
    if commit.returncode != 0:
        raise RuntimeError(f"git cannot read revision {rev!r} in {cwd}: {proc.stderr.strip()} (fetch it, e.g. "
                           "`git fetch origin`, or check out with fetch-depth: 0 in CI)")
    return None  # the revision has no dvc.lock


def lock_stages(lock: str | None) -> dict:
    """The stages of a dvc.lock's text, read as DVC reads it ({} without a lock)."""
    from dvc.utils.serialize import parse_yaml

    return (parse_yaml(lock, "dvc.lock") or {}).get("stages", {}) if lock else {}


def feature_networks(lock: str | None) -> dict[tuple[str, str], set[str]]:
    """{(dataset, model): the hashes of classifiers/<dataset> its evaluations read (one per seed's
    evals/<dataset>/<model>/seed<k>)}, from dvc.lock's stages ({} without a lock)."""
    networks: dict[tuple[str, str], set[str]] = {}
    for entry in lock_stages(lock).values():
        read = {dep["path"].split("/")[1]: dep.get("md5", "") for dep in entry.get("deps", [])
                if dep["path"].count("/") == 1 and dep["path"].startswith(f"{NETWORKS}/")}
        for out in entry.get("outs", []):
            parts = out["path"].split("/")
            if len(parts) == 4 and parts[0] == EVALS and parts[1] in read:
                networks.setdefault((parts[1], parts[2]), set()).add(read[parts[1]])
    return networks


def changed_networks(rev_a: str, rev_b: str | None, cwd: str | Path) -> dict[tuple[str, str], str]:
    """{(dataset, model): "classifiers/<dataset>: old → new" (short hashes)} for each cell whose
    evaluations read other feature networks at rev_b (None: the workspace) than at rev_a; a cell
    either lock lacks is left out."""
    old, new = (feature_networks(lock_text(rev, cwd)) for rev in (rev_a, rev_b))
    return {cell: f"{NETWORKS}/{cell[0]}: {short_hashes(old[cell])} → {short_hashes(new[cell])}"
            for cell in sorted(old.keys() & new.keys()) if old[cell] != new[cell]}


def short_hashes(hashes: set[str]) -> str:
    return "/".join(sorted(h[:7] for h in hashes))


def network_rows() -> set[str]:
    """The rows measured in the dataset's own networks (the metric registry says which)."""
    from pipeline.evaluate import registry  # registering the metrics imports torch: only when needed

    return {row for network in registry.DATASET_NETWORKS for row in registry.rows_needing(network)}


def compare(old: dict, new: dict, q: float = Q, networks: dict[tuple[str, str], str] | None = None) -> list[Change]:
    """Every (dataset, model, metric) of either summary, with Welch's p where both sides have
    one, and Benjamini–Hochberg at q over all those p-values. In the cells of `networks`
    (changed_networks) the rows measured in the dataset's own networks are not tested."""
    keys = sorted({(d, m, k) for s in (old, new) for d, models in s.items() for m, ms in models.items() for k in ms})
    networks = networks or {}
    untested = network_rows() if networks else set()
    changes = []
    for d, m, k in keys:
        a = Stats.from_summary(old.get(d, {}).get(m, {}).get(k))
        b = Stats.from_summary(new.get(d, {}).get(m, {}).get(k))
        if (d, m) in networks and k in untested:
            changes.append(Change(d, m, k, a, b, other_networks=networks[d, m]))
        else:
            changes.append(Change(d, m, k, a, b, welch_p(a, b) if a and b else None))
    tested = [c for c in changes if c.p is not None]
    for c, flag in zip(tested, bh_significant([c.p for c in tested], q)):
        c.significant = flag
    return changes


def num(s: Stats | None) -> str:
    if s is None or math.isnan(s.mean):
        return "—"
    return f"{s.mean:.4g} ± {s.std:.2g}" if s.n > 1 else f"{s.mean:.4g}"


def verdict(c: Change) -> str:
    if c.old is None or c.new is None:
        return "new" if c.old is None else "removed"
    return OTHER_NETWORKS if c.other_networks else format_p(c.p, c.significant)


def headline(changes: list[Change], q: float = Q) -> str:
    """One line: how many rows are significant, out of how many compared; what could not be told,
    and what was not tested because the revisions' feature networks differ."""
    tested = [c for c in changes if c.p is not None]
    both = [c for c in changes if c.old is not None and c.new is not None]
    too_few = sum(c.p is None and not c.other_networks for c in both)
    untested = sum(bool(c.other_networks) for c in both)
    sig = sum(c.significant for c in changes)
    head = f"**{sig} of {len(tested)} rows changed significantly**" if sig else "**Nothing is significant**"
    tail = f"; {too_few} rows: {TOO_FEW} (fewer than 2 seeds on a side)" if too_few else ""
    if untested:
        where = "; ".join(sorted({c.other_networks for c in both if c.other_networks}))
        tail += (f"; **{untested} rows not tested: {OTHER_NETWORKS}** ({where}). They are measured in the "
                 "dataset's own classifier and autoencoder, which the two revisions trained to other weights "
                 "(another CPU kind, or a change to them), so their change is the networks' as much as the models'")
    return (f"{head} (Welch's t-test on each revision's mean/std/n over seeds, Benjamini–Hochberg at "
            f"q = {q:g} across the {len(tested)} rows present in both{' and tested' if untested else ''}){tail}.")


def render_metrics(changes: list[Change], rev_a: str, rev_b: str, show_all: bool = False) -> str:
    """Markdown of metric changes: a headline, then new/removed rows and the smallest p first."""
    lines = [f"## Metrics: {rev_a} → {rev_b}", ""]
    if not changes:
        return "\n".join(lines + [f"No metrics found in either revision ({SUMMARY}).", ""])
    shown = [c for c in changes if show_all or c.delta is None or c.delta != 0]
    if not shown:
        return "\n".join(lines + ["No metric changed. " + headline(changes), ""])
    shown.sort(key=lambda c: (c.delta is not None, c.p is None, c.p or 0.0, c.dataset, c.model, c.metric))
    lines += [headline(changes), "", "| dataset | model | metric | old | new | Δ | p (Welch) |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {c.dataset} | {c.model} | {c.metric} | {num(c.old)} | {num(c.new)} | "
              f"{'—' if c.delta is None else f'{c.delta:+.4g}'} | {verdict(c)} |" for c in shown]
    lines += ["", "old/new: mean ± std over seeds; ⚠ marks the rows that survive Benjamini–Hochberg."]
    return "\n".join(lines) + "\n"


def render_params(params_diff: dict, show_all: bool = False) -> str:
    """Markdown of `dvc params diff --json`: the params that changed (all with show_all)."""
    lines = ["## Params", ""]
    rows = [(f, k, e) for f, entries in params_diff.items() for k, e in sorted(entries.items())
            if show_all or e.get("old") != e.get("new")]
    if not rows:
        return "\n".join(lines + ["No params changed.", ""])
    lines += ["| file | param | old | new |", "|---|---|---|---|"]
    lines += [f"| {f} | {k} | {e.get('old')} | {e.get('new')} |" for f, k, e in rows]
    return "\n".join(lines) + "\n"


def render(metrics_diff: dict, params_diff: dict, rev_a: str, rev_b: str, show_all: bool = False,
           networks: dict[tuple[str, str], str] | None = None) -> str:
    """Markdown for a pull request: metric changes with their significance, then params.
    `networks`: the cells whose feature networks differ (changed_networks)."""
    changes = compare(*summaries(metrics_diff), networks=networks)
    return render_metrics(changes, rev_a, rev_b, show_all) + "\n" + render_params(params_diff, show_all)


def fetch(rev_a: str, rev_b: str | None, cwd: str | Path, show_all: bool = False) -> tuple[dict, dict]:
    """`dvc metrics diff --all` and `dvc params diff` between rev_a and rev_b (None: the workspace)."""
    revs = [rev_a] + ([rev_b] if rev_b else [])
    metrics_diff = run_dvc(["metrics", "diff", "--all", *revs], cwd)
    params_diff = run_dvc(["params", "diff", *(["--all"] if show_all else []), *revs], cwd)
    return metrics_diff, params_diff


def diff(rev_a: str, rev_b: str | None = None, cwd: str | Path = ".", show_all: bool = False) -> str:
    """Markdown of what changed between rev_a and rev_b (default: the workspace)."""
    return render(*fetch(rev_a, rev_b, cwd, show_all), rev_a, rev_b or "workspace", show_all,
                  changed_networks(rev_a, rev_b, cwd))
