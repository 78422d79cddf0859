"""Long-format metric rows: the Parquet schema, validated writes, and aggregation into
metrics/results.parquet, metrics/summary.json (for `dvc metrics show/diff`) and
metrics/table.md (AVAE Table 1 layout, mean ± std over seeds)."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io import atomic_write, atomic_write_json, atomic_write_text

SCHEMA_VERSION = 1
SCHEMA = pa.schema([
    ("dataset", pa.string()),  # dataset name, e.g. fashion_mnist
    ("method", pa.string()),  # registered method, e.g. avae
    ("variant", pa.string()),  # model name in params (the table row), e.g. avae_b
    ("seed", pa.int64()),
    ("metric", pa.string()),  # e.g. mse, fd_classifier, fid
    ("value", pa.float64()),  # NaN when status != ok
    ("split", pa.string()),  # data split compared against: test / train
    ("scale", pa.string()),  # value range the metric was computed on, e.g. [0,1]
    ("n_samples", pa.int64()),  # examples or generated samples used
    ("features", pa.string()),  # feature extractor, e.g. classifier:fashion_mnist, inception-2015-12-05
    ("status", pa.string()),  # ok | missing | failed
    ("reason", pa.string()),  # why not ok
    ("time_s", pa.float64()),  # wall time of this metric
    ("git_rev", pa.string()),  # commit of the code that computed it
    ("params_hash", pa.string()),  # hash of the cell's resolved configuration
], metadata={"schema_version": str(SCHEMA_VERSION)})
STATUSES = ("ok", "missing", "failed")


class SchemaError(ValueError):
    """A metrics frame does not match SCHEMA."""


def validate(df: pd.DataFrame) -> pa.Table:
    """Check columns, dtypes and statuses; return the Arrow table to write."""
    missing = [f.name for f in SCHEMA if f.name not in df.columns]
    extra = [c for c in df.columns if c not in SCHEMA.names]
    if missing or extra:
        raise SchemaError(f"metrics frame: missing columns {missing}, unexpected columns {extra}")
    try:
        table = pa.Table.from_pandas(df[SCHEMA.names], schema=SCHEMA, preserve_index=False, safe=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise SchemaError(f"metrics frame does not match schema v{SCHEMA_VERSION}: {e}") from None
    for name in ("dataset", "method", "variant", "metric", "status", "seed"):
        if table.column(name).null_count:
            raise SchemaError(f"metrics frame: column {name!r} has nulls")
    bad = sorted(set(df["status"]) - set(STATUSES))
    if bad:
        raise SchemaError(f"metrics frame: unknown status {bad}; allowed {STATUSES}")
    ok = df["status"] == "ok"
    if df.loc[ok, "value"].isna().any():
        raise SchemaError("metrics frame: a row with status 'ok' has no value")
    return table


def write_metrics(df: pd.DataFrame, path: str | Path) -> Path:
    """Validate and write atomically."""
    table = validate(df)
    return atomic_write(path, lambda p: pq.write_table(table, p))


def read_metrics(path: str | Path) -> pd.DataFrame:
    table = pq.read_table(path)
    version = (table.schema.metadata or {}).get(b"schema_version", b"?").decode()
    if version != str(SCHEMA_VERSION):
        raise SchemaError(f"{path}: schema version {version}, this code reads {SCHEMA_VERSION}; re-run evaluate")
    return table.to_pandas()


def git_revision(cwd: str | Path = ".") -> str:
    """HEAD commit (with '+dirty' when tracked files differ), or 'unknown' outside git."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def collect(files: list[Path]) -> pd.DataFrame:
    frames = [read_metrics(f) for f in sorted(files)]
    if not frames:
        raise FileNotFoundError("no per-cell metrics.parquet found: run `dvc repro evaluate` first")
    return pd.concat(frames, ignore_index=True)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and count over seeds of every ok metric per (dataset, variant, metric)."""
    ok = df[df["status"] == "ok"]
    g = ok.groupby(["dataset", "variant", "metric"])["value"]
    return g.agg(["mean", "std", "count"]).reset_index()


def summary_json(summary: pd.DataFrame) -> dict:
    """{dataset: {variant: {metric: {mean, std, n}}}} for `dvc metrics show/diff`."""
    out: dict = {}
    for row in summary.itertuples():
        std = 0.0 if math.isnan(row.std) else row.std
        out.setdefault(row.dataset, {}).setdefault(row.variant, {})[row.metric] = {
            "mean": round(float(row.mean), 6), "std": round(float(std), 6), "n": int(row.count)}
    return out


def fmt(mean: float, std: float) -> str:
    digits = 2 if abs(mean) >= 10 else 4 if abs(mean) < 0.1 else 3
    return f"{mean:.{digits}f} ± {0.0 if math.isnan(std) else std:.{digits}f}"


def markdown_table(df: pd.DataFrame, order: list[str], metrics: list[str]) -> str:
    """AVAE Table 1 layout: a row per model, for each dataset a column per metric (mean ± std)."""
    summary = summarise(df)
    datasets = list(dict.fromkeys(df["dataset"]))
    variants = [v for v in order if v in set(df["variant"])] + sorted(set(df["variant"]) - set(order))
    lines = []
    for dataset in datasets:
        sub = df[df["dataset"] == dataset]
        present = [m for m in metrics if m in set(sub["metric"])] + sorted(set(sub["metric"]) - set(metrics))
        n_seeds = sub["seed"].nunique()
        lines += [f"## {dataset} (mean ± std over {n_seeds} seed{'s' if n_seeds != 1 else ''})", "",
                  "| model | " + " | ".join(present) + " |", "|---" * (len(present) + 1) + "|"]
        notes = {}
        for variant in variants:
            rows = sub[sub["variant"] == variant]
            if rows.empty:
                continue
            cells = []
            for metric in present:
                s = summary[(summary.dataset == dataset) & (summary.variant == variant) & (summary.metric == metric)]
                r = rows[rows["metric"] == metric]
                if not s.empty:
                    cells.append(fmt(s["mean"].iloc[0], s["std"].iloc[0]))
                elif not r.empty:
                    status = r["status"].iloc[0]
                    notes.setdefault(f"{metric} {status}", r["reason"].iloc[0])
                    cells.append(status)
                else:
                    cells.append("—")
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
        lines.append("")
        for key, reason in notes.items():
            lines.append(f"- {key}: {reason}")
        lines += ["", "— : not applicable to the method (e.g. no encoder). fd_classifier: Fréchet distance in the "
                  "feature space of a classifier trained on the training split (samples vs training split).", ""]
    return "\n".join(lines)


TABLE_METRICS = ["mse", "kl", "lpips", "fid", "fd_classifier", "fd_data"]


def aggregate(files: list[Path], out_dir: str | Path, order: list[str]) -> pd.DataFrame:
    """Write results.parquet, summary.json and table.md under out_dir from per-cell files."""
    out_dir = Path(out_dir)
    df = collect(files)
    write_metrics(df, out_dir / "results.parquet")
    atomic_write_json(out_dir / "summary.json", summary_json(summarise(df)))
    atomic_write_text(out_dir / "table.md", "# Results\n\n" + markdown_table(df, order, TABLE_METRICS))
    return df

