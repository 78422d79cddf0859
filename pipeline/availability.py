"""Which metrics each grid dataset cannot have, and why, told before anything runs
(`python -m pipeline check`): no labels or a single class (no dataset classifier: its metrics
are `missing` rows), vector data (no image metrics), pretrained weights absent or not the
published files (`missing` rows). The same reasons the evaluate stage writes into its rows.

What a dataset is comes from its prepared meta.json when that was prepared from the current
params entry, else from its declaration (image_folder: its raw folder's layout and split_file).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.classifier import why_no_classifier
from pipeline.config import Params
from pipeline.datainfo import DatasetCorrupt, DatasetMissing
from pipeline.datasets import DATASETS
from pipeline.datasets.base import Expected
from pipeline.sections import DatasetConfig


@dataclass
class Lacking:
    """One reason a dataset goes without some metric rows: `status` 'missing' (a row with the
    reason) or 'not computed' (no column: image metrics on vector data)."""

    rows: list[str]
    status: str
    reason: str


@dataclass
class DatasetReport:
    """name; what: its kind and labels in words; lacking: the rows it cannot have; problem: why
    prepare will refuse its raw data ('' when it will not, as far as can be told)."""

    name: str
    what: str
    lacking: list[Lacking] = field(default_factory=list)
    problem: str = ""


def prepared_facts(name: str, cfg: DatasetConfig, prepared_root: Path) -> Expected | None:
    """The facts of data/prepared/<name>/meta.json, when it was prepared from this params entry."""
    path = Path(prepared_root) / name / "meta.json"
    try:
        meta = json.loads(path.read_text())
        info = meta["info"]
    except (OSError, ValueError, KeyError):
        return None
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("chunk", "download")}  # as data.prepare records
    if meta.get("config") != settings:
        return None
    return Expected(info["kind"], int(info["n_classes"]), f"{path}", meta.get("labels"))


def dataset_facts(name: str, cfg: DatasetConfig, prepared_root: Path) -> Expected:
    """The prepared meta.json's facts, else the declaration's (DatasetCorrupt / DatasetMissing when
    the raw data will be refused)."""
    return prepared_facts(name, cfg, prepared_root) or DATASETS[cfg.loader or name].expected(cfg, name)


def describe(facts: Expected) -> str:
    if facts.kind != "image":
        return f"{facts.kind} data"
    labels = ("labels unknown" if facts.n_classes is None else "no labels" if facts.n_classes == 0
              else f"{facts.n_classes} classes")
    return f"image data, {labels} (from {facts.known_from})"


def dataset_report(params: Params, name: str, prepared_root: Path) -> DatasetReport:
    """The metric rows dataset `name` cannot have, each with the reason its rows will carry."""
    from pipeline.evaluate import chosen_metrics, weights_reason

    cfg = params.dataset(name)
    try:
        facts = dataset_facts(name, cfg, prepared_root)
    except (DatasetCorrupt, DatasetMissing) as e:
        return DatasetReport(name, "cannot be prepared", problem=str(e))
    report = DatasetReport(name, describe(facts))
    if facts.kind != "image":
        image_only = [r for spec in chosen_metrics(params.evaluate.metrics, "image") if "image" in spec.needs
                      for r in spec.row_names]
        report.lacking.append(Lacking(image_only, "not computed", f"{facts.kind} data: image metrics have no column"))
    specs = chosen_metrics(params.evaluate.metrics, facts.kind)
    classifier_rows = [r for spec in specs if "classifier" in spec.needs for r in spec.row_names]
    if facts.n_classes is None:
        why = (f"labels unknown until the raw folder is there ({facts.known_from}); with every image directly in it "
               "(no class subfolders) and no split_file label column, these rows will be missing")
    else:
        why = why_no_classifier(name, facts.kind, facts.n_classes, facts.labels)
    if why and classifier_rows:
        report.lacking.append(Lacking(classifier_rows, "missing", why))
    for weights in dict.fromkeys(w for spec in specs for w in spec.weights):
        reason = weights_reason(weights, params.evaluate)
        rows = [r for spec in specs if weights in spec.weights for r in spec.row_names]
        if reason:
            report.lacking.append(Lacking(rows, "missing", reason))
    return report


def report(params: Params, prepared_root: Path = Path("data/prepared")) -> tuple[str, list[str]]:
    """Text for `python -m pipeline check`: per grid dataset what it is and the rows it cannot
    have, why; and the problems (raw data prepare will refuse), one line each."""
    lines, problems = ["metrics each grid dataset cannot have (`python -m pipeline metrics` lists them all):"], []
    for name in params.grid.datasets:
        r = dataset_report(params, name, prepared_root)
        lines.append(f"  {name}: {r.what}" + ("" if r.lacking or r.problem else ": every metric"))
        lines += [f"    {item.status}: {', '.join(item.rows)} -- {item.reason}" for item in r.lacking]
        if r.problem:
            lines.append(f"    prepare will refuse it: {r.problem}")
            problems.append(f"datasets.{name}: {r.problem}")
    return "\n".join(lines), problems
