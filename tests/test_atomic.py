"""Atomic outputs: fsync before the rename, a full disk half way through a write leaves the
previous version intact (Parquet, JSON, PNG), an interrupted preparation leaves the old
prepared folder intact and resumes, and a failed grid cell never removes other cells' rows."""

import errno
import io
import json
import math
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from pipeline import data as datamod
from pipeline import evaluate, report, results, run
from pipeline import io as pio
from pipeline.datainfo import DataInfo
from pipeline.datasets.base import Plan, Split
from pipeline.evaluate import pictures as pictures_module
from tests.test_results import frame

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def disk_full_half_way(real, dest_arg: int = 1):
    """`real` (a writer taking its destination at position dest_arg) made to fail like a full disk:
    it renders the real bytes, writes half of them to the destination, then raises ENOSPC."""

    def failing(*args, **kwargs):
        args = list(args)
        dest, buffer = args[dest_arg], io.BytesIO()
        args[dest_arg] = buffer
        real(*args, **kwargs)
        Path(dest).write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(dest))

    return failing


def assert_only(folder: Path, *names: str) -> None:
    """No temporary file (or anything else) is left beside the outputs."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


# ---------------------------------------------------------------- atomic_write itself


def test_atomic_write_fsyncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    pio.atomic_write_text(tmp_path / "out.txt", "hello")
    assert events == ["fsync file", "rename", "fsync dir"]
    assert (tmp_path / "out.txt").read_text() == "hello"


def test_a_failing_writer_leaves_the_old_file_and_no_temp_file(tmp_path):
    pio.atomic_write_text(tmp_path / "out.txt", "old")

    def crash(p: Path) -> None:
        p.write_text("half")
        raise KeyboardInterrupt  # not only Exceptions: a Ctrl-C mid-write cleans up too

    with pytest.raises(KeyboardInterrupt):
        pio.atomic_write(tmp_path / "out.txt", crash)
    assert (tmp_path / "out.txt").read_text() == "old"
    assert_only(tmp_path, "out.txt")


def test_atomic_savez_keeps_the_exact_name(tmp_path):
    mu, sigma = np.arange(3.0), np.eye(3)
    path = pio.atomic_savez(tmp_path / "stats.npz", mu=mu, sigma=sigma)
    blob = np.load(path)
    assert np.array_equal(blob["mu"], mu) and np.array_equal(blob["sigma"], sigma)
    assert_only(tmp_path, "stats.npz")


def test_equal_objects_saved_under_different_names_are_byte_identical(tmp_path):
    blob = {"w": torch.arange(6.0).reshape(2, 3), "step": 3}
    a = pio.atomic_torch_save(blob, tmp_path / "a" / "model.pt").read_bytes()
    b = pio.atomic_torch_save(blob, tmp_path / "b" / "other.pt").read_bytes()
    assert a == b
    assert torch.equal(torch.load(io.BytesIO(a), weights_only=True)["w"], blob["w"])


# ---------------------------------------------------------------- full disk during a write


def test_full_disk_during_a_metrics_write_keeps_the_old_parquet(tmp_path, monkeypatch):
    path = tmp_path / "results.parquet"
    first = pd.concat([frame(seed=s, value=0.1 * (s + 1)) for s in range(3)], ignore_index=True)
    results.write_metrics(first, path)
    monkeypatch.setattr(pq, "write_table", disk_full_half_way(pq.write_table))
    with pytest.raises(OSError) as raised:
        results.write_metrics(first.assign(value=9.0), path)
    assert raised.value.errno == errno.ENOSPC
    pd.testing.assert_frame_equal(results.read_metrics(path), first)
    assert_only(tmp_path, "results.parquet")


def test_full_disk_during_a_json_write_keeps_the_old_json(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    pio.atomic_write_json(path, {"fid": 1.0})

    def half_then_enospc(self: Path, text: str, *args, **kwargs):
        with open(self, "w") as f:
            f.write(text[:len(text) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", half_then_enospc)
    with pytest.raises(OSError, match="No space left"):
        pio.atomic_write_json(path, {"fid": 2.0, "is": 3.0})
    assert json.loads(path.read_text()) == {"fid": 1.0}
    assert_only(tmp_path, "summary.json")


def pictures(tmp_path: Path, samples01: torch.Tensor) -> evaluate.Pictures:
    """Pictures of a stand-in cell that has only what the samples grid reads."""
    cell = SimpleNamespace(cfg=SimpleNamespace(grid_rows=2), samples01=samples01)
    return evaluate.Pictures(cell, tmp_path)


def test_png_grid_is_a_png_although_the_temp_name_ends_in_tmp(tmp_path):
    path = pictures(tmp_path, torch.rand(4, 1, 8, 8)).samples()
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert Image.open(path).size == (2 * 8 + 3, 2 * 8 + 3)  # 2 x 2 grid with padding 1
    assert_only(tmp_path, "samples.png")


def test_full_disk_during_a_png_grid_write_keeps_the_old_png(tmp_path, monkeypatch):
    path = pictures(tmp_path, torch.zeros(4, 1, 8, 8)).samples()
    old = path.read_bytes()
    monkeypatch.setattr(pictures_module, "save_image", disk_full_half_way(pictures_module.save_image))
    with pytest.raises(OSError) as raised:
        pictures(tmp_path, torch.ones(4, 1, 8, 8)).samples()
    assert raised.value.errno == errno.ENOSPC
    assert path.read_bytes() == old
    assert_only(tmp_path, "samples.png")


def test_vector_scatter_is_written_as_png(tmp_path):
    points = np.random.default_rng(0).standard_normal((50, 2)).astype(np.float32)
    cell = SimpleNamespace(cfg=SimpleNamespace(grid_rows=2), samples=torch.from_numpy(points),
                           data=SimpleNamespace(x=lambda split: points))
    path = evaluate.Pictures(cell, tmp_path).scatter()
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert_only(tmp_path, "samples.png")


# ---------------------------------------------------------------- prepared data: interrupted preparation


def vector_plan(version: float, fail_at: int | None = None, reads: list | None = None) -> Plan:
    """20 points of value `version`, read 5 at a time; reading from `fail_at` on raises."""

    def read(start: int, stop: int):
        if reads is not None:
            reads.append(start)
        if fail_at is not None and start >= fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        return np.full((stop - start, 2), version, np.float32), None

    info = DataInfo("points", "vector", (2,), "raw", 0)
    return Plan(info, {"train": Split(20, (2,), read, labelled=False, dtype="float32")}, {"version": version})


def test_interrupted_preparation_keeps_the_old_folder_and_resumes(tmp_path):
    out = tmp_path / "points"
    datamod.write_prepared(vector_plan(1.0), out, chunk=5)
    with pytest.raises(OSError, match="No space left"):
        datamod.write_prepared(vector_plan(2.0, fail_at=10), out, chunk=5)
    old = datamod.load_prepared(out)  # verifies checksums: the old folder is whole
    assert np.all(np.asarray(old.x("train")) == 1.0)
    marker = json.loads((tmp_path / "points.tmp" / datamod.PROGRESS).read_text())
    assert marker["done"] == {"train": 10}
    reads = []
    datamod.write_prepared(vector_plan(2.0, reads=reads), out, chunk=5)
    assert reads == [10, 15]  # resumed at the marker, not from the start
    assert np.all(np.asarray(datamod.load_prepared(out).x("train")) == 2.0)
    assert_only(tmp_path, "points")  # no .tmp or .old folder left
    assert_only(out, "meta.json", "train_x.npy")


# ---------------------------------------------------------------- a failed cell in the aggregate


def good_cell(path: Path, variant: str, seed: int, value: float) -> Path:
    rows = [frame(dataset="toy2d", variant=variant, method=variant, seed=seed, metric=m, value=value)
            for m in ("mse", "fd_classifier")]
    return results.write_metrics(pd.concat(rows, ignore_index=True), path)


def test_a_failed_cell_is_recorded_and_never_removes_other_cells_rows(tmp_path, params):
    evals = tmp_path / "evals"
    good = [("vae", 0, 0.1), ("vae", 1, 0.2), ("gan", 0, 0.3)]
    files = [good_cell(evals / v / f"seed{s}" / "metrics.parquet", v, s, x) for v, s, x in good]
    failed_dir = evals / "avae_b" / "seed0"
    run.record_failed_cell(params, "toy2d", "avae_b", 0, failed_dir, "train", "RuntimeError: loss is NaN")
    files.append(failed_dir / "metrics.parquet")

    before = report.aggregate(files, tmp_path / "out", ["vae", "gan", "avae_b"])
    assert len(before) == 2 * len(good) + 1
    for v, s, x in good:
        cell = before[(before.variant == v) & (before.seed == s)]
        assert sorted(cell.metric) == ["fd_classifier", "mse"] and (cell.value == x).all()
    failed = before[before.status == "failed"]
    assert failed[["variant", "seed", "metric"]].values.tolist() == [["avae_b", 0, "cell"]]
    assert failed.reason.item() == "train: RuntimeError: loss is NaN" and math.isnan(failed.value.item())

    good_cell(files[-1], "avae_b", 0, 0.4)  # the failed cell re-runs and succeeds
    after = report.aggregate(files, tmp_path / "out", ["vae", "gan", "avae_b"])
    key = ["variant", "seed", "metric"]
    others = before[before.variant != "avae_b"]
    kept = others.merge(after, on=key, suffixes=("", "_after"))
    rows_lost = len(others) - int((kept.value == kept.value_after).sum())
    print(f"rows before {len(before)}, after {len(after)}, other cells' rows lost {rows_lost}")
    assert rows_lost == 0
    rerun = after[after.variant == "avae_b"]
    assert sorted(rerun.metric) == ["fd_classifier", "mse"] and (rerun.status == "ok").all()
    assert len(after) == 2 * (len(good) + 1)
