"""A tiny `dvc repro` of the whole pipeline in a temporary copy of the repository."""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.datasets.fashion_mnist import FASHION_MNIST_DEFAULT, FASHION_MNIST_ENV
from tests.conftest import ROOT
from tests.test_metrics_evaluate import NEEDS_WEIGHTS

pytestmark = pytest.mark.slow


def fashion_mnist_available() -> bool:
    import os

    return Path(os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DEFAULT, "t10k-labels-idx1-ubyte.gz").exists()


@pytest.mark.skipif(not fashion_mnist_available(), reason="Fashion-MNIST not installed (make test installs it)")
def test_tiny_dvc_repro(tmp_path):
    work = tmp_path / "repo"
    work.mkdir()
    for item in ("pipeline", "stages", "dvc.yaml", "params.yaml", "pyproject.toml"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["datasets"]["fashion_mnist"].update({"n_train": 2000, "n_test": 300})
    raw["grid"].update({"seeds": [0], "pretrain": ["vae"], "baselines": ["gan"],
                        "stage2": [{"model": "avae_b", "export": "vae"}], "evaluate": ["vae", "gan", "avae_b"]})
    raw["networks"] = {"width": 4, "latent_dim": 8, "mlp_hidden": 16}
    raw["train"].update({"iterations": 20, "log_every": 5, "checkpoint_every": 10})
    raw["models"]["vae"]["train"] = {"iterations": 20}
    raw["evaluate"].update({"n_samples": 300, "batch_size": 150})
    raw["classifier"].update({"epochs": 1})
    (work / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(work), "HOME": str(tmp_path),
           "PYTHONDONTWRITEBYTECODE": "1"}  # .pyc files written into pipeline/ would change the stages' deps
    run = lambda *cmd: subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)  # noqa: E731
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        assert run(*cmd).returncode == 0
    out = run("dvc", "repro")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    df = pd.read_parquet(work / "metrics" / "results.parquet")
    assert set(df["variant"]) == {"vae", "gan", "avae_b"}
    ok = df[df.status == "ok"]
    assert {"mse", "kl", "fd_classifier"} <= set(ok[ok.variant == "avae_b"].metric)
    assert set(df[df.status == "missing"].metric) <= NEEDS_WEIGHTS  # no Inception/AlexNet offline
    assert "| avae_b |" in (work / "metrics" / "table.md").read_text()
    assert "data:image/png;base64," in (work / "metrics" / "report.html").read_text()
    for name in ("samples.png", "reconstructions.png"):
        assert (work / "evals" / "fashion_mnist" / "avae_b" / "seed0" / name).stat().st_size > 100
    assert (work / "models" / "fashion_mnist" / "vae" / "seed0" / "export.pt").exists()
    status = run("dvc", "status")
    assert "up to date" in status.stdout, status.stdout
    show = run("dvc", "metrics", "show")
    assert "fashion_mnist.avae_b.mse.mean" in show.stdout.replace(" ", "") or "avae_b" in show.stdout
