"""Every paper's params file runs end to end: shrunk by `python -m pipeline smoke`, on tiny raw
files written in each dataset's official format, through every stage of dvc.yaml (planned from
DVC's graph and run in this process, as the flow's inline CPU slot runs them), to a table and a
paper view with every row x dataset and every metric ok, missing with its reason, or n/a."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from collections import deque
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline import published
from pipeline.config import load_params
from pipeline.datasets import DATASETS
from pipeline.datasets import celeba, lsun, mnist
from pipeline.execute import LineLog, dvc_commit, run_in_process
from pipeline.params_file import shrink, smoke, stage_count
from pipeline.plan import plan_grid
from tests.conftest import ROOT, write_idx
from tests.test_datasets import cifar_files, md5, pin_svhn, write_celeba, write_lsun, write_svhn

PAPERS = ("avae", "alpha_gan", "lsr_gan", "avae_s")


def write_raw(name: str, loader: str, raw: Path, monkeypatch) -> Path:
    """Tiny raw files of dataset `loader` in its official format under raw/<name>, their
    checksums pinned as the official ones (in this process); returns the source folder."""
    folder = raw / name
    if loader in ("cifar10", "cifar100"):
        dataset = DATASETS[loader]
        cifar_files(raw / f"{name}_extract", dataset, per_batch=8 if loader == "cifar10" else 40)  # 5 train batches vs 1
        folder.mkdir(parents=True)
        with tarfile.open(folder / dataset.archive, "w:gz") as tar:
            tar.add(raw / f"{name}_extract" / dataset.folder, arcname=dataset.folder)
        monkeypatch.setattr(type(dataset), "archive_md5", md5(folder / dataset.archive))
    elif loader == "svhn":
        write_svhn(folder, 24)
        pin_svhn(folder, monkeypatch)
    elif loader in ("mnist", "color_mnist"):
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        pinned = {}
        for key, (fname, _) in mnist.MD5.items():
            n = 40 if key.startswith("train") else 16
            write_idx(folder / fname, rng.integers(0, 256, (n, 28, 28)) if key.endswith("x") else rng.integers(0, 10, n))
            pinned[key] = (fname, md5(folder / fname))
        monkeypatch.setattr(mnist, "MD5", pinned)
    elif loader == "celeba":
        write_celeba(folder, n=36)
        monkeypatch.setitem(celeba.MD5, "list_eval_partition.txt", md5(folder / "list_eval_partition.txt"))
    elif loader == "lsun_bedroom":
        folder.mkdir(parents=True)
        write_lsun(folder, 24, 8)
        monkeypatch.setattr(lsun, "COUNTS", {"train": 24, "val": 8})
    else:
        raise AssertionError(f"no raw-file writer for {loader}")
    return folder


def smoke_repo(paper: str, work: Path, raw: Path, monkeypatch) -> Path:
    """A copy of the repository whose params.yaml is `smoke params/<paper>.yaml`, each dataset's
    source pointing at tiny raw files."""
    work.mkdir()
    for item in ("pipeline", "stages", "dvc.yaml", "params", "pyproject.toml", "docs"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
    smoke(work / "params" / f"{paper}.yaml", work / "params.yaml")
    params = yaml.safe_load((work / "params.yaml").read_text())
    for name, entry in params["datasets"].items():
        loader = entry.get("loader") or name
        if loader != "toy2d":
            entry["source"] = str(write_raw(name, loader, raw, monkeypatch))
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        subprocess.run([str(Path(sys.executable).parent / cmd[0]) if cmd[0] == "dvc" else cmd[0], *cmd[1:]],
                       cwd=work, check=True, capture_output=True)
    return work


def test_smoke_keeps_the_grid_and_shrinks_the_cost():
    raw = yaml.safe_load((ROOT / "params" / "alpha_gan.yaml").read_text())
    small = shrink(raw)
    assert small["grid"]["baselines"] == raw["grid"]["baselines"] and small["grid"]["seeds"] == [0]
    assert {m["train"]["iterations"] for m in small["models"].values()} == {4}
    assert small["datasets"]["color_mnist"]["n_train"] == 256 and small["evaluate"]["n_samples"] == 64
    assert raw["models"]["dcgan"]["train"]["iterations"]["celeba"] == 200000  # the source is left as it was


@pytest.mark.parametrize("paper", PAPERS)
def test_paper_file_counts_its_stages_as_dvc_resolves_them(paper, tmp_path):
    from dvc.repo import Repo

    work = tmp_path / "repo"
    work.mkdir()
    shutil.copy(ROOT / "dvc.yaml", work)
    shutil.copy(ROOT / "params" / f"{paper}.yaml", work / "params.yaml")
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    subprocess.run([str(Path(sys.executable).parent / "dvc"), "init", "-q"], cwd=work, check=True)
    with Repo(str(work)) as repo:
        assert len(repo.index.stages) == stage_count(load_params(work / "params.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("paper", PAPERS)
def test_paper_file_runs_end_to_end(paper, tmp_path, monkeypatch):
    from dvc.repo import Repo

    work = smoke_repo(paper, tmp_path / "repo", tmp_path / "raw", monkeypatch)
    monkeypatch.chdir(work)
    params = load_params(work / "params.yaml")
    calls = plan_grid(work, params)
    assert len(calls) == stage_count(params)
    for call in calls:
        tail: deque[str] = deque(maxlen=30)
        code = run_in_process(list(call.argv), str(work), LineLog(tail.append, tail))
        assert code == 0, f"{call.name} failed:\n" + "\n".join(tail)
    assert dvc_commit(work, [c.name for c in calls]) == []
    with Repo(str(work)) as repo:
        assert repo.status() == {}  # `dvc repro` would find nothing to do

    df = pd.read_parquet(work / "metrics" / "results.parquet")
    g = params.grid
    for dataset in g.datasets:
        for model in g.evaluate:
            cell = df[(df.dataset == dataset) & (df.variant == model)]
            assert len(cell), (dataset, model)
            assert set(cell.status) <= {"ok", "missing", "n/a"}, cell[cell.status == "failed"][["metric", "reason"]]
            assert (cell[cell.status != "ok"].reason.str.len() > 0).all()
            assert "sharpness_laplace" in set(cell[cell.status == "ok"].metric), (dataset, model)
    view = (work / "metrics" / "papers" / f"{paper}.md").read_text()
    published_rows = {cell.model for table in published.load()[paper].tables for cell in table.cells}
    for model in published_rows & set(g.evaluate):  # the paper's own rows (controls and sweeps have no published value)
        assert f"| {model} " in view, model
    table = (work / "metrics" / "table.md").read_text()
    assert all(f"| {model} |" in table for model in g.evaluate)
