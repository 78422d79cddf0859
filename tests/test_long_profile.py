"""benchmarks/long_profile.py on a tiny grid: `keep` copies a part's evaluated cells and (first
part) its feature networks, takes nothing twice, and `table` builds the table from the kept cells."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import deque
from pathlib import Path

import pytest

from pipeline.config import load_params
from pipeline.execute import LineLog, dvc_commit, run_in_process
from pipeline.plan import plan_grid
from tests.grid_repo import make_repo
from tests.test_e2e import fashion_mnist_available

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "long_profile.py"


def long_profile(*args: str) -> str:
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
@pytest.mark.skipif(not fashion_mnist_available(), reason="Fashion-MNIST not installed (make test installs it)")
def test_keep_takes_a_parts_evaluated_cells_once_and_table_reads_them(tmp_path, monkeypatch):
    work = make_repo(tmp_path)
    monkeypatch.chdir(work)
    calls = plan_grid(work, load_params(work / "params.yaml"), datasets=["fashion_mnist"], seeds=[0])
    for call in calls:  # one part: seed 0 of fashion_mnist, run in process as the flow's inline slot does
        tail: deque[str] = deque(maxlen=30)
        assert run_in_process(list(call.argv), str(work), LineLog(tail.append, tail)) == 0, "\n".join(tail)
    assert dvc_commit(work, [c.name for c in calls]) == []
    kept = tmp_path / "kept"

    out = long_profile("keep", str(kept), "--run", str(work))
    assert "kept 2 cells" in out, out
    for model in ("vae", "avae_b"):
        cell = kept / "cells" / "fashion_mnist" / model / "seed0"
        assert sorted(p.name for p in cell.iterdir()) == ["metrics.parquet", "run.json", "samples.png", "train_log.csv"]
    assert (kept / "classifiers" / "fashion_mnist").is_dir() and (kept / "classifiers.json").exists()
    assert "kept 0 cells" in long_profile("keep", str(kept), "--run", str(work))

    long_profile("table", str(kept), "--run", str(work))
    with open(kept / "cells.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["model"], r["seed"]) for r in rows) == [("avae_b", "0"), ("vae", "0")]
    assert "| vae |" in (kept / "metrics" / "table.md").read_text()
