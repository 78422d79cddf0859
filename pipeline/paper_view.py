"""Published vs ours: each seed paper's printed numbers (pipeline/published.py) beside our mean ± std
over seeds, converted to the paper's scale (paper = factor × ours + offset), per table of the paper.

Per column (a dataset and metric, or a printed line of a sweep) the view says whether our order of the
rows agrees with the paper's: Kendall's τ (tau-b) over the rows both hold, and the pairs that flip, each
with Welch's t-test on our seeds and Benjamini–Hochberg across every pair compared in the paper's view
(pipeline/significance.py). Pairs the paper prints as equal are not compared. Rows absent from the
results say "not run"; a metric that could not be computed says its status, as metrics/table.md does.
`write_views` writes metrics/papers/<paper>.md for each paper whose rows the results hold, and an index;
`html_section` is the report's "Paper view".
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from pipeline.io import atomic_write_text
from pipeline.published import PUBLISHED, TEST_DATA, Cell, Column, Paper, Table, load
from pipeline.results import summarise
from pipeline.significance import Q, Stats, bh_significant, format_p, welch_p

LEGEND = ("Ours: mean ± std over seeds (number of seeds; the test data row: over every cell), on the paper's "
          "scale. τ: Kendall's tau-b of our values against the paper's over the rows both hold; a flip is a pair "
          "the two order differently, ⚠ where Welch's t-test on our seeds survives Benjamini–Hochberg at "
          f"q = {Q:g} across every pair compared in this view.")


# ---------------------------------------------------------------- ours


@dataclass(frozen=True)
class Ours:
    """Our side of a cell: a status ('ok', 'not run', 'missing', ...), the stats on our scale, the name read."""

    status: str
    stats: Stats | None = None
    read_as: str = ""


def _stats(table: pd.DataFrame, key: tuple) -> Stats | None:
    if key not in table.index:
        return None
    s = table.loc[key]
    return Stats(float(s["mean"]), 0.0 if math.isnan(s["std"]) else float(s["std"]), int(s["count"]))


class Results:
    """The long-format results (metrics/results.parquet) as the paper view reads them."""

    def __init__(self, df: pd.DataFrame):
        keys = ["dataset", "variant", "metric"]
        self.stats = summarise(df).set_index(keys)
        self.pooled = summarise(df.assign(variant=TEST_DATA)).set_index(keys)  # the test split, over every cell
        self.runs = set(zip(df["dataset"], df["variant"]))
        self.datasets = set(df["dataset"])
        bad = df[df["status"] != "ok"]
        self.status = dict(zip(zip(bad["dataset"], bad["variant"], bad["metric"]), bad["status"]))

    def resolve(self, paper: Paper, dataset: str, model: str) -> str | None:
        """The model's name in the results: its own, else the first of its aliases present."""
        return next((m for m in (model, *paper.aliases.get(model, [])) if (dataset, m) in self.runs), None)

    def ours(self, paper: Paper, cell: Cell) -> Ours:
        if cell.model in paper.external:
            return Ours("not in this benchmark")
        if cell.our_metric is None:
            return Ours("no metric of ours")
        if cell.model == TEST_DATA:
            s = _stats(self.pooled, (cell.dataset, TEST_DATA, cell.our_metric))
            return Ours("ok", s) if s else Ours("not measured" if cell.dataset in self.datasets else "not run")
        name = self.resolve(paper, cell.dataset, cell.model)
        if name is None:
            return Ours("not run")
        key, read_as = (cell.dataset, name, cell.our_metric), "" if name == cell.model else name
        s = _stats(self.stats, key)
        return Ours("ok", s, read_as) if s else Ours(self.status.get(key, "not measured"), None, read_as)

    def covers(self, paper: Paper) -> bool:
        """Whether the results hold any of the paper's rows: a model on its dataset, or a test-data value."""
        return any(self.ours(paper, c).status == "ok" if c.model == TEST_DATA
                   else self.resolve(paper, c.dataset, c.model) for t in paper.tables for c in t.cells)


# ---------------------------------------------------------------- order agreement


@dataclass(frozen=True)
class Pair:
    """Two rows of a column both the paper and we hold, the paper not tying them."""

    a: str
    b: str
    flipped: bool
    p: float | None
    significant: bool = False


@dataclass(frozen=True)
class Check:
    """Our order of a column's rows against the paper's: τ over n rows and the pairs compared."""

    group: tuple
    n: int
    tau: float | None
    pairs: tuple[Pair, ...]

    def text(self) -> str:
        if self.n < 2 or not self.pairs:
            return f"fewer than 2 rows run ({self.n}): nothing to order" if self.n < 2 else \
                f"the paper prints the {self.n} rows run as equal: nothing to order"
        tau = "τ —" if self.tau is None else f"τ {self.tau:.2f}"
        flips = [p for p in self.pairs if p.flipped]
        if not flips:
            return f"same order as the paper ({tau}, {self.n} rows)"
        listed = ", ".join(f"{p.a} ↔ {p.b} (p {format_p(p.p, p.significant)})" for p in flips)
        return f"{tau}, {self.n} rows: {len(flips)} of {len(self.pairs)} pairs flip: {listed}"


def order_checks(paper: Paper, results: Results) -> dict[tuple, Check]:
    """Per column of every table of the paper (keyed by table id + group), τ and the flipped pairs."""
    from scipy.stats import kendalltau

    checks = {}
    for table in paper.tables:
        groups: dict[tuple, list[tuple[Cell, Stats]]] = {}
        for cell in table.cells:
            ours = results.ours(paper, cell)
            if cell.value is not None and cell.model != TEST_DATA and ours.status == "ok":
                groups.setdefault(cell.group, []).append((cell, table.columns[cell.metric].to_paper(ours.stats)))
        for group, rows in groups.items():
            pairs = tuple(Pair(a.model, b.model, (a.value - b.value) * (sa.mean - sb.mean) < 0, welch_p(sa, sb))
                          for i, (a, sa) in enumerate(rows) for b, sb in rows[i + 1:] if a.value != b.value)
            tau = kendalltau([c.value for c, _ in rows], [s.mean for _, s in rows]).statistic if len(rows) > 1 else None
            checks[(table.id, *group)] = Check(group, len(rows), None if tau is None or math.isnan(tau) else tau, pairs)
    tested = [(k, i) for k, c in checks.items() for i, p in enumerate(c.pairs) if p.p is not None]
    flags = dict(zip(tested, bh_significant([checks[k].pairs[i].p for k, i in tested])))
    return {k: replace(c, pairs=tuple(replace(p, significant=flags.get((k, i), False)) for i, p in enumerate(c.pairs)))
            for k, c in checks.items()}


# ---------------------------------------------------------------- rendering


def tidy(printed: str) -> str:
    """A printed cell without the text extraction's marks: '3.03e - 5' -> '3.03e-5', '0.25%%' -> '0.25%'."""
    return re.sub(r"e\s*-\s*", "e-", printed).replace("%%", "%")


def fmt_ours(ours: Ours, column: Column) -> str:
    if ours.status != "ok":
        return ours.status
    s = column.to_paper(ours.stats)
    text = f"{s.mean:.4g} ± {s.std:.2g} ({s.n})" if s.n > 1 else f"{s.mean:.4g} (1 seed)"
    return text + (f" as {ours.read_as}" if ours.read_as else "")


def _ns(df: pd.DataFrame, datasets: list[str], metric: str | None) -> str:
    ns = sorted(set(df.loc[df["dataset"].isin(datasets) & (df["metric"] == metric), "n_samples"].astype(int)))
    return "" if not ns else f"; ours: n_samples {ns[0]:,}" + (f"–{ns[-1]:,}" if len(ns) > 1 else "")


def table_blocks(paper: Paper, table: Table, results: Results, checks: dict, df: pd.DataFrame) -> list:
    """One paper table as blocks: ('h', level, text) | ('p', text) | ('table', header, rows) | ('ul', items)."""
    blocks = [("h", 2, f"{table.id} ({paper.seed})"), ("p", f"{table.caption} Published ±: {table.spread}.")]
    datasets = list(dict.fromkeys(c.dataset for c in table.cells))
    for dataset in datasets:
        cells = [c for c in table.cells if c.dataset == dataset]
        if dataset not in results.datasets:
            blocks.append(("p", f"{dataset}: not run ({len(cells)} published values)."))
            continue
        metrics = list(dict.fromkeys(c.metric for c in cells))
        models = list(dict.fromkeys(c.model for c in cells))
        by = {(c.model, c.metric): c for c in cells}
        rows = []
        for model in models:
            row = [model]
            for m in metrics:
                c = by.get((model, m))
                ours = "" if c is None or c.printed == "-" else fmt_ours(results.ours(paper, c), table.columns[m])
                row += ["" if c is None else tidy(c.printed), ours]
            rows.append(row)
        header = ["model"] + [h for m in metrics for h in (f"{m} (paper)", "ours")]
        groups = dict.fromkeys(c.group for c in cells if (table.id, *c.group) in checks)
        order = [f"{g[1]}{f' ({g[2]})' if g[2:] and g[2] else ''}: {checks[(table.id, *g)].text()}" for g in groups]
        blocks += [("h", 3, dataset), ("table", header, rows), ("ul", order or ["order: no column has 2 rows run"])]
    notes = [f"{m} ({col.label}): paper scale {col.scale}; paper = {col.factor:g} × ours"
             + (f" + {col.offset:g}" if col.offset else "") + f" ({col.basis}). Protocol: {col.protocol}"
             + _ns(df, datasets, m) for m, col in table.columns.items()]
    return blocks + [("p", "Columns: the paper's scale, the conversion and where it comes from, the protocol:"),
                     ("ul", notes)]


def paper_blocks(paper: Paper, df: pd.DataFrame, results: Results | None = None) -> list:
    """A paper's view as blocks: its training caveat, then each of its tables."""
    results = results or Results(df)
    checks = order_checks(paper, results)
    blocks = [("p", f"{paper.title}. Paper's training: {paper.training}. Ours: as params.yaml sets it (the CPU "
                    "default trains small networks briefly; params/<paper>.yaml has the papers' sizes)."
                    + (f" {paper.note}" if paper.note else "")), ("p", LEGEND)]
    for table in paper.tables:
        blocks += table_blocks(paper, table, results, checks, df)
    return blocks


def markdown(blocks: list, title: str) -> str:
    out = [f"# {title}", ""]
    for b in blocks:
        if b[0] == "h":
            out += ["#" * b[1] + " " + b[2], ""]
        elif b[0] == "p":
            out += [b[1], ""]
        elif b[0] == "table":
            out += ["| " + " | ".join(b[1]) + " |", "|---" * len(b[1]) + "|"]
            out += ["| " + " | ".join(r) + " |" for r in b[2]] + [""]
        else:
            out += [f"- {item}" for item in b[1]] + [""]
    return "\n".join(out)


def to_html(blocks: list) -> str:
    e = html.escape
    out = []
    for b in blocks:
        if b[0] == "h":
            out.append(f"<h{b[1] + 2}>{e(b[2])}</h{b[1] + 2}>")
        elif b[0] == "p":
            out.append(f"<p class='note'>{e(b[1])}</p>")
        elif b[0] == "table":
            out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in b[1]) + "</tr>" + "".join(
                "<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in b[2]) + "</table>")
        else:
            out.append("<ul class='note'>" + "".join(f"<li>{e(i)}</li>" for i in b[1]) + "</ul>")
    return "\n".join(out)


def index_text(papers: dict[str, Paper], done: list[Paper]) -> str:
    lines = ["# Published vs ours", "", f"Published numbers: pipeline/{PUBLISHED.name}. " + LEGEND, ""]
    for p in papers.values():
        datasets = ", ".join(dict.fromkeys(c.dataset for t in p.tables for c in t.cells))
        lines.append(f"- [{p.name}]({p.name}.md): {p.title}" if p in done else
                     f"- {p.name}: not run: these results hold none of its rows (datasets: {datasets})")
    return "\n".join(lines) + "\n"


def write_views(df: pd.DataFrame, out_dir: str | Path, path: str | Path = PUBLISHED) -> list[Path]:
    """metrics/papers/index.md and <paper>.md for each paper whose rows the results hold (atomic writes;
    a paper view left from an earlier run that no longer applies is removed)."""
    papers, out_dir, results = load(path), Path(out_dir), Results(df)
    done = [p for p in papers.values() if results.covers(p)]
    written = [atomic_write_text(out_dir / "index.md", index_text(papers, done))]
    for p in done:
        text = markdown(paper_blocks(p, df, results), f"{p.name}: published vs ours")
        written.append(atomic_write_text(out_dir / f"{p.name}.md", text))
    for stale in set(out_dir.glob("*.md")) - set(written):
        stale.unlink()
    return written


def html_section(df: pd.DataFrame, path: str | Path = PUBLISHED) -> str:
    """The report's "Paper view": a folded block per paper the results cover, a line for the others."""
    papers, results = load(path), Results(df)
    done = [p for p in papers.values() if results.covers(p)]
    parts = ["<h2>Paper view: published vs ours</h2>"]
    parts += [f"<details><summary><b>{html.escape(p.name)}</b>: {html.escape(p.title)}</summary>"
              f"{to_html(paper_blocks(p, df, results))}</details>" for p in done]
    rest = [p.name for p in papers.values() if p not in done]
    if rest:
        parts.append(f"<p class='note'>Not run (none of their rows in these results): "
                     f"{html.escape(', '.join(rest))}. Published numbers: pipeline/{PUBLISHED.name}.</p>")
    return "\n".join(parts)
