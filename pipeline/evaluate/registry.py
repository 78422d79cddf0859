"""The metric registry: every fact about a metric stated once, where it is registered
(stylegan2-ada's metric_main style), and read from here by the evaluator, the tables, the
weights report and the tests.

A registration (`register_metric` on the metric's function in `pipeline.evaluate.adapters`)
states the metric's name, which cells it applies to (`needs`), the pretrained weights it needs
(`weights`, keys of WEIGHTS), and the rows it writes (`RowSpec`: name, lower or higher is
better, the table section its column sits in, the row holding the test data's own value).
Registration order is evaluation order and, within a section, column order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from pipeline import weights
from pipeline.sections import EvaluateConfig

if TYPE_CHECKING:
    from pipeline.evaluate.cell import Cell

LOWER, HIGHER = "lower", "higher"  # which values of a row are better ("" : neither, e.g. kl, density)
RECONSTRUCTION, GENERATION = "Reconstruction (test split)", "Generation (samples)"
SECTIONS = (RECONSTRUCTION, GENERATION)  # the table sections, in order; a row in none is no column
# posterior: a stochastic encoder; classifier / autoencoder: the dataset's own networks (train_classifier)
NEEDS = {"image", "vector", "encoder", "posterior", "classifier", "autoencoder"}
WHY_NOT = {  # the reason a metric needing this fact of the model does not apply to it (an `n/a` row)
    "encoder": "the model has no encoder (nothing to reconstruct with)",
    "posterior": "the model's encoder is deterministic (no q(z|x) to draw from or measure a KL of)",
}
DATASET_NETWORKS = ("classifier", "autoencoder")  # without one the metrics needing it are `missing` rows
WEIGHTS = {  # pretrained weights a metric may declare -> the files it needs, each checked (pipeline.weights)
    "inception": lambda cfg: [weights.inception(cfg.inception_weights)],
    "lpips": lambda cfg: [weights.alexnet(cfg.alexnet_weights), weights.lpips_linear()],
}


@dataclass
class Row:
    """One metric value before provenance is attached."""

    metric: str
    value: float
    split: str
    scale: str
    n_samples: int
    features: str = ""
    status: str = "ok"
    reason: str = ""
    time_s: float = 0.0


def missing(metric: str, split: str, scale: str, n: int, features: str, reason: str) -> Row:
    return Row(metric, float("nan"), split, scale, n, features, "missing", reason)


@dataclass(frozen=True)
class RowSpec:
    """A metric row a metric writes. name; better: LOWER, HIGHER or "" (no better direction);
    section: the table section of its column (one of SECTIONS; "" : no column, e.g. the test
    data's own value); reference: the row holding the test data's own value, shown beneath the
    models in a "test data" row."""

    name: str
    better: str = ""
    section: str = ""
    reference: str = ""

    def __post_init__(self) -> None:
        if self.better not in ("", LOWER, HIGHER) or self.section not in ("", *SECTIONS):
            raise ValueError(f"metric row {self.name}: better = {self.better!r} (use {LOWER!r}, {HIGHER!r} or ''), "
                             f"section = {self.section!r} (use one of {list(SECTIONS)} or '')")


@dataclass
class MetricSpec:
    """A registered metric: name, function Cell -> rows, what a cell needs for it to apply, the
    rows it may write (default: one row of its own name) and the pretrained weights it needs
    (keys of WEIGHTS; without them its rows are `missing`)."""

    name: str
    fn: Callable[[Cell], list[Row]]
    needs: frozenset = field(default_factory=frozenset)  # subset of NEEDS
    rows: tuple[RowSpec, ...] = ()
    weights: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.rows = tuple(self.rows) or (RowSpec(self.name),)

    @property
    def row_names(self) -> tuple[str, ...]:
        return tuple(row.name for row in self.rows)


METRICS: dict[str, MetricSpec] = {}


def register_metric(name: str, *needs: str, rows: tuple[str | RowSpec, ...] = (), better: str = "",
                    section: str = "", weights: tuple[str, ...] = ()):
    """Decorator: add a metric to METRICS. `needs`: which cells it applies to (NEEDS); `rows`: the
    rows it writes (default: `name` alone), a plain name taking the metric's `better` and
    `section`, a RowSpec its own; `weights`: the pretrained weights it needs (WEIGHTS)."""
    unknown = (set(needs) - NEEDS) | (set(weights) - set(WEIGHTS))
    if unknown:
        raise ValueError(f"metric {name}: unknown needs or weights {unknown}; allowed {sorted(NEEDS)} "
                         f"and {sorted(WEIGHTS)}")
    specs = tuple(row if isinstance(row, RowSpec) else RowSpec(row, better, section) for row in rows or (name,))

    def deco(fn: Callable[[Cell], list[Row]]):
        if name in METRICS:
            raise ValueError(f"metric {name!r} registered twice")
        taken = {row.name for spec in METRICS.values() for row in spec.rows} & {row.name for row in specs}
        if taken:
            raise ValueError(f"metric {name!r}: rows {sorted(taken)} are written by another metric")
        METRICS[name] = MetricSpec(name, fn, frozenset(needs), specs, tuple(weights))
        return fn

    return deco


def row_specs() -> dict[str, RowSpec]:
    """Every registered row by name, in registration order."""
    return {row.name: row for spec in METRICS.values() for row in spec.rows}


def better(row: str) -> str:
    """LOWER, HIGHER or "" (no direction, or not a registered row)."""
    spec = row_specs().get(row)
    return spec.better if spec else ""


def table_sections() -> list[tuple[str, list[str]]]:
    """(section, its rows in column order) for each of SECTIONS."""
    rows = row_specs().values()
    return [(section, [row.name for row in rows if row.section == section]) for section in SECTIONS]


def references() -> dict[str, str]:
    """row -> the row holding the test data's own value (α-GAN: diversity; AVAE-S T3: sharpness)."""
    return {row.name: row.reference for row in row_specs().values() if row.reference}


def rows_needing(name: str) -> list[str]:
    """The rows measured with `name`: pretrained weights (a WEIGHTS key; without them the rows
    are `missing`) or one of the dataset's own networks (DATASET_NETWORKS)."""
    if name not in WEIGHTS and name not in DATASET_NETWORKS:
        raise ValueError(f"rows_needing({name!r}): name pretrained weights {sorted(WEIGHTS)} or one of the "
                         f"dataset's networks {list(DATASET_NETWORKS)}")
    return [row.name for spec in METRICS.values() if name in spec.weights or name in spec.needs for row in spec.rows]


def weights_reason(name: str, cfg: EvaluateConfig) -> str:
    """Why the weights `name` (a WEIGHTS key) cannot be used: the first file absent or not the
    published one ('' when every file is verified)."""
    return next((w.reason for w in WEIGHTS[name](cfg) if not w.verified), "")


def chosen_metrics(selected: list[str], kind: str) -> list[MetricSpec]:
    """The selected metrics (evaluate.metrics, empty = all) made for this kind of data (image or
    vector): the others are no column of that dataset's table."""
    chosen = selected or list(METRICS)
    unknown = sorted(set(chosen) - set(METRICS))
    if unknown:
        raise ValueError(f"evaluate.metrics: unknown {unknown}; registered metrics: {sorted(METRICS)}")
    return [METRICS[name] for name in chosen if METRICS[name].needs & {"image", "vector"} <= {kind}]
