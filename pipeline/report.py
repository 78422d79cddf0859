"""Reports from the long-format results: metrics/table.md (AVAE-Table-1 style: mean ± std over
seeds, best per column in bold) and a self-contained metrics/report.html (opens from disk: the
paper view of pipeline/paper_view.py, tables, bar charts per metric, LSR-GAN-style β/λ sweep
curves, and for every cell its sample grid, reconstructions, interpolation strip and latent
traversals, all inlined as base64 PNG).
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from pipeline import paper_view, results
from pipeline.evaluate import registry
from pipeline.io import atomic_write_json, atomic_write_text
from pipeline.results import summarise

PICTURES = [("samples.png", "samples"), ("reconstructions.png", "test originals / reconstructions (alternating rows)"),
            ("interpolation.png", "latent interpolation"), ("traversals.png", "latent traversals (a row per dim)")]
SWEEP_METRICS = ["mse", "recon_variance", "recon_accuracy", "recon_accuracy_relative", "fid", "fd_classifier",
                 "sharpness_norm_laplace_recon"]
TEST_DATA = "test data"


@dataclass
class Entry:
    """One table cell: text, and the numbers behind it (None when not ok)."""

    text: str
    mean: float | None = None
    std: float | None = None
    bold: bool = False


def fmt(mean: float, std: float) -> str:
    digits = 2 if abs(mean) >= 10 else 4 if abs(mean) < 0.1 else 3
    return f"{mean:.{digits}f} ± {0.0 if math.isnan(std) else std:.{digits}f}"


def ordered_variants(df: pd.DataFrame, order: list[str]) -> list[str]:
    present = set(df["variant"])
    return [v for v in order if v in present] + sorted(present - set(order))


def columns_for(sub: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """Table sections with the metrics present for this dataset; leftovers go to 'Other'."""
    present = set(sub["metric"]) - set(registry.references().values())
    out, used = [], set()
    for title, names in registry.table_sections():
        cols = [m for m in names if m in present]
        used |= set(cols)
        if cols:
            out.append((title, cols))
    rest = sorted(present - used)
    if rest:
        out.append(("Other", rest))
    return out


def table(df: pd.DataFrame, dataset: str, metrics_: list[str], order: list[str]) -> tuple[list[tuple[str, list[Entry]]], dict]:
    """Rows (model, entries) of one dataset and section, best per column in bold; notes {key: reason}."""
    sub = df[df["dataset"] == dataset]
    stats = summarise(sub).set_index(["variant", "metric"])
    rows, notes = [], {}
    for variant in ordered_variants(sub, order):
        rows_v = sub[sub["variant"] == variant]
        entries = []
        for metric in metrics_:
            if (variant, metric) in stats.index:
                s = stats.loc[(variant, metric)]
                text = fmt(s["mean"], s["std"]) if s["count"] > 1 else fmt(s["mean"], 0.0).split(" ±")[0] + " (1 seed)"
                entries.append(Entry(text, float(s["mean"]), float(s["std"])))
                continue
            r = rows_v[rows_v["metric"] == metric]
            if r.empty or r["status"].iloc[0] == "n/a":  # n/a: the model has no such part (reason in the row)
                entries.append(Entry("—"))
            else:
                status = r["status"].iloc[0]
                notes.setdefault(f"{metric} {status}", r["reason"].iloc[0])
                entries.append(Entry(status))
        if any(e.text != "—" for e in entries):  # a model with nothing in this section gets no row
            rows.append((variant, entries))
    for j, metric in enumerate(metrics_):
        values = [(e[j].mean, i) for i, (_, e) in enumerate(rows) if e[j].mean is not None]
        if len(values) >= 2 and registry.better(metric):
            best = (min if registry.better(metric) == registry.LOWER else max)(v for v, _ in values)
            for v, i in values:
                rows[i][1][j].bold = v == best
    reference, references = [Entry("—") for _ in metrics_], registry.references()
    for j, metric in enumerate(metrics_):
        ref = sub[(sub["metric"] == references.get(metric, "")) & (sub["status"] == "ok")]["value"]
        if len(ref):
            reference[j] = Entry(fmt(float(ref.mean()), 0.0), float(ref.mean()), 0.0)
    if any(e.mean is not None for e in reference):
        rows.append((TEST_DATA, reference))
    return rows, notes


def grouped(notes: dict[str, str]) -> list[tuple[str, str]]:
    """{'fid missing': reason, 'fid_64 missing': same reason} -> [('fid, fid_64 missing', reason)]."""
    by_reason: dict[str, list[str]] = {}
    for key, reason in notes.items():
        by_reason.setdefault(reason, []).append(key)
    out = []
    for reason, keys in by_reason.items():
        status = keys[0].rsplit(" ", 1)[-1]
        names = [k.rsplit(" ", 1)[0] for k in keys]
        out.append((f"{', '.join(names)} {status}", reason))
    return out


def arrow(metric: str) -> str:
    return {registry.LOWER: " ↓", registry.HIGHER: " ↑"}.get(registry.better(metric), "")


def count(n: int) -> str:
    """50000 -> '50k', 2500 -> '2.5k', 500 -> '500'."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else f"{n / 1000:g}k" if n >= 1000 else str(n)


def header(sub: pd.DataFrame, metric: str) -> str:
    """Column header: the metric, the samples (or pairs, or examples) it used, its direction:
    'fid (50k) ↓'; a range when the models of the table used different counts."""
    ns = sorted(set(sub.loc[(sub["metric"] == metric) & (sub["n_samples"] > 0), "n_samples"].astype(int)))
    used = "" if not ns else f" ({count(ns[0])})" if len(ns) == 1 else f" ({count(ns[0])}–{count(ns[-1])})"
    return metric + used + arrow(metric)


FOOTNOTE = ("(n): samples, test images or image pairs the metric used. "
            "↓ lower is better, ↑ higher is better; best per column in bold. — : not applicable (e.g. no encoder). "
            "fd_classifier: Fréchet distance in the feature space of a classifier trained on the training split; "
            "fd_autoencoder: the same in the bottleneck of an autoencoder trained on it without labels (comparable "
            "within this table only, never with FID). "
            "'test data': the test split's own value (diversity: α-GAN §4; sharpness: AVAE-S T3 ground truth).")


def markdown(df: pd.DataFrame, order: list[str]) -> str:
    """metrics/table.md: per dataset, a table per section, mean ± std over seeds."""
    lines = ["# Results", ""]
    for dataset in dict.fromkeys(df["dataset"]):
        sub = df[df["dataset"] == dataset]
        n_seeds = sub["seed"].nunique()
        lines += [f"## {dataset} (mean ± std over {n_seeds} seed{'s' if n_seeds != 1 else ''})", ""]
        notes = {}
        for title, cols in columns_for(sub):
            rows, n = table(df, dataset, cols, order)
            notes.update(n)
            lines += [f"### {title}", "", "| model | " + " | ".join(header(sub, c) for c in cols) + " |",
                      "|---" * (len(cols) + 1) + "|"]
            lines += [f"| {variant} | " + " | ".join(f"**{e.text}**" if e.bold else e.text for e in entries) + " |"
                      for variant, entries in rows]
            lines.append("")
        lines += [f"- {keys}: {reason}" for keys, reason in grouped(notes)]
        lines += ["", FOOTNOTE, ""]
    return "\n".join(lines)


def aggregate(files: list[Path], out_dir: str | Path, order: list[str]) -> pd.DataFrame:
    """Write results.parquet, summary.json, table.md and papers/ (published vs ours, pipeline/paper_view.py)
    under out_dir from per-cell files."""
    out_dir = Path(out_dir)
    df = results.collect(files)
    results.write_metrics(df, out_dir / "results.parquet")
    atomic_write_json(out_dir / "summary.json", results.summary_json(summarise(df)))
    atomic_write_text(out_dir / "table.md", markdown(df, order))
    paper_view.write_views(df, out_dir / "papers")
    return df


# ---------------------------------------------------------------- figures


def png_data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)  # figures set their margins; bbox "tight" would draw each one twice
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def file_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def bar_charts(df: pd.DataFrame, dataset: str, order: list[str]) -> list[tuple[str, str]]:
    """(metric, data URI) of a bar chart (mean ± std over seeds, a bar per model) per ok metric."""
    stats = summarise(df[df["dataset"] == dataset])
    out = []
    for metric in sorted(set(stats["metric"]) - set(registry.references().values())):  # test-data values: tables
        s = stats[stats["metric"] == metric].set_index("variant")
        variants = [v for v in ordered_variants(df[df["dataset"] == dataset], order) if v in s.index]
        height = 0.7 + 0.16 * len(variants)  # inches: a row per model, fixed room for title and axis
        fig = Figure(figsize=(3.6, height))
        ax = fig.subplots()
        ax.barh(range(len(variants)), s.loc[variants, "mean"], xerr=s.loc[variants, "std"].fillna(0), capsize=2,
                color="#4c72b0")
        ax.set_yticks(range(len(variants)), variants, fontsize=7)
        ax.invert_yaxis()  # the table's row order, top to bottom
        ax.set_title(metric + arrow(metric), fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        # fixed margins (tight_layout would draw the figure again): 1.1 in for the model names
        fig.subplots_adjust(left=1.1 / 3.6, right=0.96, bottom=0.35 / height, top=1 - 0.3 / height)
        out.append((metric, png_data_uri(fig)))
    return out


def numeric_settings(config: dict, dataset: str, prefix: str = "") -> dict[str, float]:
    """Numeric scalars of a model config (per-dataset mappings resolved for `dataset`)."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and dataset in value:
            value = value[dataset]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[prefix + key] = float(value)
    return out


def variant_settings(raw_params: dict, dataset: str) -> dict[str, dict[str, float]]:
    """{variant: {setting: value}} from params.yaml's models (and, for stage-2 models, their
    export's settings as 'vae.<key>'), for finding sweeps."""
    models = raw_params.get("models", {}) or {}
    out = {name: numeric_settings({k: v for k, v in (entry or {}).items() if k not in ("method", "train")}, dataset)
           for name, entry in models.items()}
    for entry in (raw_params.get("grid", {}) or {}).get("stage2", []) or []:
        export, name = entry.get("export"), entry.get("model")
        base = numeric_settings({k: v for k, v in (models.get(export) or {}).items() if k not in ("method", "train")},
                                dataset, "vae.")
        if name in out:
            out[name] = {**base, **out[name]}
    return out


def find_sweeps(df: pd.DataFrame, dataset: str, settings: dict[str, dict[str, float]]) -> list[tuple[str, str, list[str]]]:
    """(method, setting, variants) where >= 3 variants of one method differ in that setting only."""
    sub = df[df["dataset"] == dataset]
    sweeps = []
    for method, group in sub.groupby("method"):
        variants = [v for v in dict.fromkeys(group["variant"]) if v in settings]
        keys = set().union(*(settings[v] for v in variants)) if variants else set()
        for key in sorted(keys):
            having = [v for v in variants if key in settings[v]]
            others = {v: {k: x for k, x in settings[v].items() if k != key} for v in having}
            if len({settings[v][key] for v in having}) >= 3 and len({tuple(sorted(o.items())) for o in others.values()}) == 1:
                sweeps.append((method, key, sorted(having, key=lambda v: settings[v][key])))
    return sweeps


def sweep_figure(df: pd.DataFrame, dataset: str, method: str, key: str, variants: list[str],
                 settings: dict[str, dict[str, float]]) -> str | None:
    """LSR-GAN Fig. 5/6 kind: metrics against the swept setting (log x), mean ± std over seeds."""
    stats = summarise(df[(df["dataset"] == dataset) & df["variant"].isin(variants)])
    metrics_ = [m for m in SWEEP_METRICS if m in set(stats["metric"])]
    if not metrics_:
        return None
    fig = Figure(figsize=(3.2 * len(metrics_), 2.6))
    axes = fig.subplots(1, len(metrics_), squeeze=False)
    for ax, metric in zip(axes[0], metrics_):
        s = stats[stats["metric"] == metric].set_index("variant")
        vs = [v for v in variants if v in s.index]
        xs = [settings[v][key] for v in vs]
        ax.errorbar(xs, s.loc[vs, "mean"], yerr=s.loc[vs, "std"].fillna(0), marker="o", capsize=3)
        if all(x > 0 for x in xs):
            ax.set_xscale("log")
        ax.set_xlabel(key, fontsize=8)
        ax.set_title(metric + arrow(metric), fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{method}: metrics vs {key}", fontsize=10)
    fig.subplots_adjust(left=0.3 / len(metrics_), right=1 - 0.05 / len(metrics_), bottom=0.2, top=0.8, wspace=0.35)
    return png_data_uri(fig)


# ---------------------------------------------------------------- HTML

CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}tr.ref td{color:#666;
font-style:italic}.grid{display:flex;flex-wrap:wrap;gap:8px}.cell{border:1px solid #ddd;padding:6px;margin:6px 0}
.cell img{image-rendering:pixelated;margin-right:10px;vertical-align:top}.note{color:#555;font-size:13px}
figure{margin:0 12px 8px 0;display:inline-block;font-size:12px;text-align:center}"""


def html_table(rows: list[tuple[str, list[Entry]]], headers: list[str]) -> str:
    head = "<tr><th>model</th>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>"
    body = []
    for variant, entries in rows:
        tds = "".join(f"<td>{'<b>' if e.bold else ''}{html.escape(e.text)}{'</b>' if e.bold else ''}</td>"
                      for e in entries)
        cls = ' class="ref"' if variant == TEST_DATA else ""
        body.append(f"<tr{cls}><td>{html.escape(variant)}</td>{tds}</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def cell_pictures(evals_dir: Path | None, dataset: str, variant: str, seed: int) -> str:
    if evals_dir is None:
        return ""
    folder = Path(evals_dir) / dataset / variant / f"seed{seed}"
    figs = [f'<figure><img src="{file_data_uri(folder / name)}" alt="{name}"><figcaption>{html.escape(caption)}'
            f"</figcaption></figure>" for name, caption in PICTURES if (folder / name).exists()]
    return "".join(figs) or '<span class="note">no pictures found</span>'


def html_report(df: pd.DataFrame, order: list[str], evals_dir: Path | None = None,
                raw_params: dict | None = None,
                curves: dict[tuple[str, str], pd.DataFrame] | None = None) -> str:
    """The whole report as one self-contained HTML page."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>vaegan-bench report</title>"
             f"<style>{CSS}</style></head><body><h1>vaegan-bench results</h1>"]
    revs = ", ".join(sorted(set(df["git_rev"])))
    parts.append(f"<p class='note'>{df[['dataset', 'variant', 'seed']].drop_duplicates().shape[0]} cells, "
                 f"{len(df)} metric rows; code revision(s): {html.escape(revs)}. {html.escape(FOOTNOTE)}</p>")
    parts.append(paper_view.html_section(df))
    for dataset in dict.fromkeys(df["dataset"]):
        sub = df[df["dataset"] == dataset]
        parts.append(f"<h2>{html.escape(dataset)} — mean ± std over {sub['seed'].nunique()} seed(s)</h2>")
        notes = {}
        for title, cols in columns_for(sub):
            rows, n = table(df, dataset, cols, order)
            notes.update(n)
            parts.append(f"<h3>{html.escape(title)}</h3>{html_table(rows, [header(sub, c) for c in cols])}")
        if notes:
            parts.append("<ul class='note'>" + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>"
                                                       for k, v in grouped(notes)) + "</ul>")
        parts.append("<h3>Metrics per model</h3><div class='grid'>" + "".join(
            f"<img src='{uri}' alt='{html.escape(m)}'>" for m, uri in bar_charts(df, dataset, order)) + "</div>")
        parts.append(sweeps_html(df, dataset, raw_params))
        mine = [(v, c) for (d, v), c in (curves or {}).items() if d == dataset]
        if mine:
            parts.append("<h3>Training curves (train_log.csv, mean over seeds)</h3>" + "".join(
                f"<div><img src='{curves_figure(c, v)}' alt='{html.escape(v)} curves'></div>" for v, c in mine))
        parts.append("<h3>Cells</h3>")
        for variant in ordered_variants(sub, order):
            for seed in sorted(set(sub[sub["variant"] == variant]["seed"])):
                parts.append(f"<div class='cell'><b>{html.escape(variant)}</b> seed {seed}<br>"
                             f"{cell_pictures(evals_dir, dataset, variant, int(seed))}</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def sweeps_html(df: pd.DataFrame, dataset: str, raw_params: dict | None) -> str:
    settings = variant_settings(raw_params or {}, dataset)
    sweeps = find_sweeps(df, dataset, settings)
    out = ["<h3>Hyper-parameter sweeps (LSR-GAN Fig. 5/6 kind)</h3>"]
    figures = [sweep_figure(df, dataset, m, k, vs, settings) for m, k, vs in sweeps]
    figures = [f for f in figures if f]
    if not figures:
        out.append("<p class='note'>No sweep in these results: the β/λ curves are drawn when three or more models "
                   "of one method differ in a single numeric setting (e.g. LSR-GAN λ ∈ {0.01 … 20} or the VAE "
                   "β behind it); add such models to params.yaml's grid to get them.</p>")
    out += [f"<img src='{uri}' alt='sweep'>" for uri in figures]
    return "\n".join(out)


def write_report(df: pd.DataFrame, out_dir: str | Path, order: list[str], evals_dir: Path | None = None,
                 raw_params: dict | None = None) -> list[Path]:
    """metrics/table.md and metrics/report.html (atomic writes)."""
    out_dir = Path(out_dir)
    return [atomic_write_text(out_dir / "table.md", markdown(df, order)),
            atomic_write_text(out_dir / "report.html", html_report(df, order, evals_dir, raw_params))]


# ---------------------------------------------------------------- training curves


def training_curves(models_dir: Path, cells: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """{(dataset, model): train_log.csv terms averaged over seeds, by iteration} for the given cells."""
    curves = {}
    for (dataset, variant), group in cells.groupby(["dataset", "variant"], sort=False):
        logs = [pd.read_csv(f) for seed in sorted(set(group["seed"]))
                if (f := Path(models_dir) / dataset / variant / f"seed{seed}" / "train_log.csv").exists()]
        if logs:
            curves[(dataset, variant)] = pd.concat(logs).groupby("iteration", as_index=False).mean(numeric_only=True)
    return curves


def write_curves(curves: dict[tuple[str, str], pd.DataFrame], out_dir: Path) -> list[Path]:
    """One CSV (iteration, value) per dataset/model/term under out_dir, for `dvc plots show`."""
    paths = []
    for (dataset, variant), frame in curves.items():
        for term in frame.columns.drop("iteration"):
            path = Path(out_dir) / dataset / variant / f"{term.replace('/', '-')}.csv"
            text = frame[["iteration", term]].rename(columns={term: "value"}).to_csv(index=False)
            paths.append(atomic_write_text(path, text))
    return paths


def curves_figure(frame: pd.DataFrame, title: str) -> str:
    terms = list(frame.columns.drop("iteration"))
    fig = Figure(figsize=(2.8 * len(terms), 2.2))
    axes = fig.subplots(1, len(terms), squeeze=False)
    for ax, term in zip(axes[0], terms):
        ax.plot(frame["iteration"], frame[term], lw=1)
        ax.set_title(term, fontsize=8)
        ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    # fixed margins: tight_layout draws the figure an extra time (half the report's run time)
    fig.subplots_adjust(left=0.3 / len(terms), right=1 - 0.05 / len(terms), bottom=0.12, top=0.78, wspace=0.4)
    return png_data_uri(fig)
