"""Is a difference between two summaries more than seed noise?

Each side is a metric's mean, sample std (ddof 1, as pandas' `std` writes it into
metrics/summary.json) and n (seeds). Welch's unequal-variance t-test gives a two-sided p-value
per row; the Benjamini–Hochberg step-up procedure then controls the false discovery rate
across a whole table of rows, so a table of a few hundred rows does not flag a dozen of them
by chance. Used by `python -m pipeline diff` / `pr-report` and by the paper findings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Q = 0.05  # Benjamini–Hochberg false discovery rate
TOO_FEW = "n too small to tell"  # what a row without a p-value says


@dataclass(frozen=True)
class Stats:
    """A metric over seeds: mean, sample std (ddof 1) and n (number of seeds)."""

    mean: float
    std: float
    n: int

    @classmethod
    def from_summary(cls, entry: dict | None) -> "Stats | None":
        """{mean, std, n} of metrics/summary.json -> Stats (None when the entry or its mean is absent;
        n missing counts as 1: a lone value)."""
        if not entry or entry.get("mean") is None:
            return None
        std = entry.get("std")
        return cls(float(entry["mean"]), 0.0 if std is None else float(std), int(entry.get("n") or 1))


def welch_p(a: Stats, b: Stats) -> float | None:
    """Two-sided p-value of Welch's t-test of a.mean vs b.mean (scipy's ttest_ind_from_stats with
    equal_var=False). None when it cannot be told: fewer than 2 seeds on either side, or no seed
    spread on both sides (std 0) with different means. Equal means with no spread: p = 1."""
    if a.n < 2 or b.n < 2:
        return None
    if a.std == 0 and b.std == 0:
        return 1.0 if a.mean == b.mean else None
    from scipy.stats import ttest_ind_from_stats

    p = ttest_ind_from_stats(a.mean, a.std, a.n, b.mean, b.std, b.n, equal_var=False).pvalue
    return None if math.isnan(p) else float(p)


def bh_significant(pvalues: list[float], q: float = Q) -> list[bool]:
    """Benjamini–Hochberg at false discovery rate q: for each p-value, whether it is rejected
    (the k smallest, for the largest k with p_(k) <= k·q/m). scipy's false_discovery_control
    gives the adjusted p-values; a row is significant when its adjusted p is <= q."""
    if not pvalues:
        return []
    from scipy.stats import false_discovery_control

    adjusted = false_discovery_control(pvalues, method="bh")
    return [bool(p <= q) for p in adjusted]


def format_p(p: float | None, significant: bool = False) -> str:
    """A p-value cell: '0.0012 ⚠' for a significant row, 'n too small to tell' without one."""
    if p is None:
        return TOO_FEW
    return f"{p:.2g}{' ⚠' if significant else ''}"
