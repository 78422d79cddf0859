"""`python -m pipeline diff REV [REV2]`: what a change did to the numbers, for pull requests.

Wraps `dvc metrics diff --json --all` and `dvc params diff --json` and prints Markdown: per
dataset, model and metric the old and new mean over seeds, the change, and the change in
units of the seed-to-seed standard deviation (the larger of the two revisions' std in
metrics/summary.json), largest first; then the params that changed.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

NOTABLE = 2.0  # |Δ| / std at or above which a change is flagged


@dataclass
class Change:
    """One (dataset, model, metric): old/new mean and std (None where absent in a revision)."""

    dataset: str
    model: str
    metric: str
    old: float | None = None
    new: float | None = None
    old_std: float | None = None
    new_std: float | None = None

    @property
    def delta(self) -> float | None:
        return None if self.old is None or self.new is None else self.new - self.old

    @property
    def in_stds(self) -> float | None:
        stds = [s for s in (self.old_std, self.new_std) if s is not None]
        if self.delta is None or not stds or max(stds) == 0:
            return None
        return self.delta / max(stds)


def run_dvc(args: list[str], cwd: str | Path) -> dict:
    """Run a dvc command with --json in `cwd` and parse its output."""
    try:
        proc = subprocess.run(["dvc", *args, "--json"], cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise RuntimeError("dvc is not on PATH: activate the project's .venv (make setup)") from None
    if proc.returncode != 0:
        raise RuntimeError(f"`dvc {' '.join(args)}` failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return json.loads(proc.stdout or "{}")


def parse_metrics(diff: dict) -> list[Change]:
    """`dvc metrics diff --json` of summary.json ({dataset: {model: {metric: {mean, std, n}}}}) -> changes."""
    changes: dict[tuple[str, str, str], Change] = {}
    for file_diff in diff.values():
        for key, entry in file_diff.items():
            parts = key.split(".")
            if len(parts) < 4 or parts[-1] not in ("mean", "std"):
                continue
            dataset, metric, field = parts[0], parts[-2], parts[-1]
            model = ".".join(parts[1:-2])
            c = changes.setdefault((dataset, model, metric), Change(dataset, model, metric))
            old, new = entry.get("old"), entry.get("new")
            if field == "mean":
                c.old, c.new = old, new
            else:
                c.old_std, c.new_std = old, new
    return list(changes.values())


def num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.4g}"


def render(metrics_diff: dict, params_diff: dict, rev_a: str, rev_b: str, show_all: bool = False) -> str:
    """Markdown for a pull request: metric changes (largest in std units first), then params."""
    changes = parse_metrics(metrics_diff)
    shown = [c for c in changes if show_all or c.delta is None or c.delta != 0]
    shown.sort(key=lambda c: (-(abs(c.in_stds) if c.in_stds is not None else math.inf if c.delta is None else 0),
                              c.dataset, c.model, c.metric))
    lines = [f"## Metrics: {rev_a} → {rev_b}", ""]
    if not shown:
        lines.append("No metric changed." if changes else "No metrics found in either revision (metrics/summary.json).")
    else:
        lines += ["| dataset | model | metric | old | new | Δ | Δ / seed std |", "|---|---|---|---|---|---|---|"]
        for c in shown:
            k = c.in_stds
            flag = " ⚠" if k is not None and abs(k) >= NOTABLE else ""
            rel = "new" if c.old is None else "removed" if c.new is None else (f"{k:+.2f}{flag}" if k is not None else "n/a")
            lines.append(f"| {c.dataset} | {c.model} | {c.metric} | {num(c.old)} | {num(c.new)} | "
                         f"{'—' if c.delta is None else f'{c.delta:+.4g}'} | {rel} |")
        lines += ["", f"Δ / seed std: change divided by the larger seed-to-seed std of the two revisions; "
                      f"⚠ marks |Δ| ≥ {NOTABLE:g} std. n/a: a single seed (no std)."]
    lines += ["", "## Params", ""]
    rows = [(f, k, e) for f, entries in params_diff.items() for k, e in sorted(entries.items())
            if show_all or e.get("old") != e.get("new")]
    if not rows:
        lines.append("No params changed.")
    else:
        lines += ["| file | param | old | new |", "|---|---|---|---|"]
        lines += [f"| {f} | {k} | {e.get('old')} | {e.get('new')} |" for f, k, e in rows]
    return "\n".join(lines) + "\n"


def diff(rev_a: str, rev_b: str | None = None, cwd: str | Path = ".", show_all: bool = False) -> str:
    """Markdown of what changed between rev_a and rev_b (default: the workspace)."""
    revs = [rev_a] + ([rev_b] if rev_b else [])
    metrics_diff = run_dvc(["metrics", "diff", "--all", *revs], cwd)
    params_diff = run_dvc(["params", "diff", *(["--all"] if show_all else []), *revs], cwd)
    return render(metrics_diff, params_diff, rev_a, rev_b or "workspace", show_all)
