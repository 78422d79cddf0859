"""A temporary copy of the repository with a tiny grid in params.yaml, for the flow tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def tiny_grid(raw: dict) -> dict:
    """params.yaml cut down to toy2d + 1,000 Fashion-MNIST images, 2 seeds, vae -> avae_b."""
    raw["datasets"]["fashion_mnist"].update({"n_train": 1000, "n_test": 200})
    raw["datasets"]["toy2d"] = {"n_train": 1000, "n_test": 200, "seed": 0}
    raw["grid"].update({"datasets": ["toy2d", "fashion_mnist"], "seeds": [0, 1], "pretrain": ["vae"],
                        "baselines": [], "stage2": [{"model": "avae_b", "export": "vae"}], "evaluate": ["vae", "avae_b"]})
    raw["networks"] = {"width": 4, "latent_dim": 8, "mlp_hidden": 16}
    raw["train"].update({"iterations": 20, "log_every": 5, "checkpoint_every": 10, "threads": 1, "device": "cpu"})
    raw["models"]["vae"]["train"] = {"iterations": 20}
    raw["evaluate"].update({"n_samples": 200, "batch_size": 100, "metrics": ["mse", "kl", "fd_classifier", "fd_data"]})
    raw["classifier"].update({"epochs": 1})
    raw["orchestration"] = {"retries": 1, "retry_delay_s": 0}
    small_toy = {"vae_iterations": 50, "avae_iterations": 50, "sweep_points": 100, "xi_draws": 2, "plot_points": 200,
                 "threads": 1}
    if "toy" in raw:  # the AVAE §5.1 figure stage (outside the grid): tiny too
        raw["toy"].update({k: v for k, v in small_toy.items() if k in raw["toy"]})
    return raw


def make_repo(tmp_path: Path, edit=tiny_grid) -> Path:
    """A temporary copy of the repository (code, dvc.yaml, prefect.yaml, params edited by `edit`) with git and DVC."""
    work = tmp_path / "repo"
    work.mkdir()
    ignore = shutil.ignore_patterns("__pycache__")
    for item in ("pipeline", "stages", "dvc.yaml", "pyproject.toml", "prefect.yaml", ".dvcignore"):
        src = ROOT / item
        (shutil.copytree(src, work / item, ignore=ignore) if src.is_dir() else shutil.copy(src, work / item))
    raw = edit(yaml.safe_load((ROOT / "params.yaml").read_text()))
    (work / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"],
                [str(BIN / "dvc"), "config", "core.analytics", "false"]):
        subprocess.run(cmd, cwd=work, check=True, capture_output=True)
    return work


def dvc(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "dvc"), *args], cwd=work, capture_output=True, text=True,
                          env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(work.parent)})
