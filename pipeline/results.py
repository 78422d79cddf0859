"""Long-format metric rows: the Parquet schema, validated writes, collecting the per-cell files,
and the summaries of metrics/summary.json (for `dvc metrics show/diff`); `pipeline.report.aggregate`
writes them with the tables and the papers' views."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io import atomic_write

SCHEMA_VERSION = 2  # v2: + checkpoint
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
    ("status", pa.string()),  # ok | missing | failed | n/a (does not apply to this model)
    ("reason", pa.string()),  # why not ok
    ("time_s", pa.float64()),  # wall time of this metric
    ("git_rev", pa.string()),  # commit of the code that computed it
    ("params_hash", pa.string()),  # hash of the cell's resolved configuration
    ("checkpoint", pa.string()),  # the evaluated model: training run hash @ iterations
], metadata={"schema_version": str(SCHEMA_VERSION)})
STATUSES = ("ok", "missing", "failed", "n/a")


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


CELL = ["dataset", "variant", "seed"]


def collect(files: list[Path]) -> pd.DataFrame:
    """Concatenate per-cell files; each must hold exactly one cell, and no cell may appear twice
    (so re-running one cell replaces its rows and no others)."""
    frames, seen = [], {}
    for f in sorted(files):
        df = read_metrics(f)
        cells = df[CELL].drop_duplicates()
        if len(cells) != 1:
            raise SchemaError(f"{f}: a per-cell metrics file holds {len(cells)} cells; expected exactly one")
        cell = tuple(cells.iloc[0])
        if cell in seen:
            raise SchemaError(f"cell {cell} appears in both {seen[cell]} and {f}")
        seen[cell] = f
        frames.append(df)
    if not frames:
        raise FileNotFoundError("no per-cell metrics.parquet found: run `dvc repro evaluate` first")
    return pd.concat(frames, ignore_index=True)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and count over seeds of every ok metric per (dataset, variant, metric)."""
    ok = df[df["status"] == "ok"]
    return ok.groupby(["dataset", "variant", "metric"])["value"].agg(["mean", "std", "count"]).reset_index()


def summary_json(summary: pd.DataFrame) -> dict:
    """{dataset: {variant: {metric: {mean, std, n}}}} for `dvc metrics show/diff` and `python -m pipeline diff`."""
    out: dict = {}
    for row in summary.itertuples():
        std = 0.0 if math.isnan(row.std) else row.std
        out.setdefault(row.dataset, {}).setdefault(row.variant, {})[row.metric] = {
            "mean": round(float(row.mean), 6), "std": round(float(std), 6), "n": int(row.count)}
    return out
