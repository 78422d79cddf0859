"""The seed papers' published numbers: pipeline/published.yaml read into typed records.

Each printed cell becomes a `Cell` (dataset, model and metric in this benchmark's names, the value
and ± parsed from the cell as printed); each table's columns carry the paper's scale and the
conversion to ours (paper = factor × ours + offset), where that scale comes from, and the paper's
protocol. The file's keys are listed at its top; a malformed entry raises PublishedError naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.significance import Stats

PUBLISHED = Path(__file__).with_name("published.yaml")
TEST_DATA = "test data"  # a paper's "test data" / "Ground Truth" cell: the test split's own value
NUM = r"(-?\d+(?:\.\d+)?(?:e-\d+)?)"
CELL = re.compile(rf"{NUM}(?:\s*±\s*{NUM})?%*")


class PublishedError(ValueError):
    """pipeline/published.yaml does not say what the paper view needs."""


@dataclass(frozen=True)
class Column:
    """One of our metrics in a paper's table: the paper's label, scale, conversion, and protocol."""

    metric: str
    label: str
    scale: str
    factor: float
    offset: float
    basis: str
    protocol: str

    def to_paper(self, s: Stats) -> Stats:
        """Our mean ± std on the paper's scale: paper = factor × ours + offset."""
        return Stats(s.mean * self.factor + self.offset, s.std * abs(self.factor), s.n)


@dataclass(frozen=True)
class Cell:
    """One printed number: where it sits, our names for it, its value and ± (None where not a number)."""

    dataset: str
    model: str
    metric: str
    our_metric: str | None  # None: no metric of ours measures it
    printed: str
    value: float | None
    spread: float | None
    group: tuple  # (dataset, metric[, printed line]): cells of a group are ordered against each other


@dataclass(frozen=True)
class Table:
    """A paper's table (or passage): id, caption, what its ± is (spread), our columns, its printed cells."""

    id: str
    caption: str
    spread: str
    columns: dict[str, Column]
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Paper:
    """A seed paper: name, seed file number, title, its training scale, a note, aliases (paper row -> other
    names a grid gives it), external (its models that are no method here), tables."""

    name: str
    seed: str
    title: str
    training: str
    note: str
    aliases: dict[str, list[str]]
    external: tuple[str, ...]
    tables: tuple[Table, ...]


def parse_cell(text: str, where: str) -> tuple[float | None, float | None]:
    """'0.06 ± 0.00' -> (0.06, 0.0); '3.03e - 5 ± 2.44e - 7' -> (3.03e-05, 2.44e-07); '45.2 ± 0.21%' ->
    (45.2, 0.21); '-' or words ('Model Collapse') -> (None, None)."""
    t = re.sub(r"e\s*-\s*", "e-", str(text).strip())
    if m := CELL.fullmatch(t):
        return float(m[1]), None if m[2] is None else float(m[2])
    if t == "-" or re.fullmatch(r"[A-Za-z ]+", t):
        return None, None
    raise PublishedError(f"{where}: cannot read the printed cell {text!r}: write 'value', 'value ± spread', "
                         "'-' or words")


KEYS = {"paper": {"seed", "title", "training", "note", "aliases", "external", "tables"},
        "table": {"id", "caption", "spread", "dataset", "datasets", "metrics", "lines"},
        "metric": {"label", "scale", "factor", "offset", "basis", "protocol"},
        "line": {"label", "passage", "metric", "model", "models", "dataset", "test_metric", "printed"}}


def _keys(entry, kind: str, where: str) -> dict:
    """The entry, when it is a mapping with known keys only."""
    if not isinstance(entry, dict):
        raise PublishedError(f"{where}: expected a mapping of {sorted(KEYS[kind])}, got {type(entry).__name__}")
    if unknown := sorted(set(entry) - KEYS[kind]):
        raise PublishedError(f"{where}: unknown key(s) {unknown}; a {kind} takes {sorted(KEYS[kind])}")
    return entry


def _need(entry: dict, key: str, where: str):
    if key not in entry:
        raise PublishedError(f"{where}: '{key}' is missing; see the key list at the top of {PUBLISHED.name}")
    return entry[key]


def _cells(line: dict, table: dict, where: str) -> list[Cell]:
    printed = _need(_keys(line, "line", where), "printed", where)
    if "datasets" in table:
        places = [(d, _need(line, "model", where)) for d in table["datasets"]]
    else:
        dataset = line.get("dataset", table.get("dataset"))
        models = line.get("models", [line.get("model")])
        if dataset is None or None in models:
            raise PublishedError(f"{where}: give the line 'model' or 'models' and the table or line a 'dataset'")
        places = [(dataset, m) for m in models]
    if len(places) != len(printed):
        raise PublishedError(f"{where}: {len(printed)} printed cells for {len(places)} places: give one cell per "
                             f"{'dataset' if 'datasets' in table else 'model'}")
    metric = _need(line, "metric", where)
    name = " ".join(line.get("label", []))
    if metric not in table["metrics"]:
        raise PublishedError(f"{where}: metric {metric!r} is not among the table's metrics {sorted(table['metrics'])}")
    out = []
    for (dataset, model), text in zip(places, printed):
        ours = line.get("test_metric") if model == TEST_DATA else metric
        group = (dataset, metric) if "datasets" in table else (dataset, metric, name)
        out.append(Cell(dataset, model, metric, ours, str(text), *parse_cell(text, where), group))
    return out


def _table(entry: dict, where: str) -> Table:
    _keys(entry, "table", where)
    columns = {m: Column(m, *(str(_need(_keys(c, "metric", f"{where}.metrics.{m}"), k, f"{where}.metrics.{m}"))
                              for k in ("label", "scale")),
                         float(_need(c, "factor", f"{where}.metrics.{m}")), float(c.get("offset", 0.0)),
                         str(c.get("basis", "")), str(c.get("protocol", "")))
               for m, c in _need(entry, "metrics", where).items()}
    lines = enumerate(_need(entry, "lines", where))
    cells = [c for i, line in lines for c in _cells(line, entry, f"{where}.lines[{i}]")]
    return Table(str(_need(entry, "id", where)), str(entry.get("caption", "")), str(entry.get("spread", "")),
                 columns, tuple(cells))


def load(path: str | Path = PUBLISHED) -> dict[str, Paper]:
    """Every paper of the data file; a malformed entry raises PublishedError naming it."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        raise PublishedError(f"{path}: not valid YAML ({e})") from None
    papers = {}
    for name, p in (_need(raw or {}, "papers", str(path)) or {}).items():
        where = f"{path}: papers.{name}"
        _keys(p, "paper", where)
        tables = tuple(_table(t, f"{where}.tables[{i}]") for i, t in enumerate(_need(p, "tables", where)))
        papers[name] = Paper(name, str(_need(p, "seed", where)), str(_need(p, "title", where)),
                             str(p.get("training", "")), str(p.get("note", "")), dict(p.get("aliases") or {}),
                             tuple(p.get("external") or ()), tables)
    return papers
