"""`dvc repro` end to end, in a temporary copy of the repository, on a researcher's own image
folders: one labelled by class subfolders, one flat (unlabelled), with a grid that omits VAE-S
and the baselines. Both get the table with every metric that applies to them; the flat one's
classifier metrics are `missing` rows saying it has no labels, and fd_autoencoder is computed
for both."""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline import evaluate
from pipeline.sections import EvaluateConfig
from tests.conftest import ROOT
from tests.shapes import write_shapes
from tests.test_metrics_evaluate import NEEDS_WEIGHTS

pytestmark = pytest.mark.slow

IMAGE_ROWS = {row for spec in evaluate.chosen_metrics([], "image") for row in spec.row_names}
CLASSIFIER_ROWS = {row for spec in evaluate.METRICS.values() if "classifier" in spec.needs for row in spec.row_names}
TINY_NET = {"classifier": {"epochs": 1, "batch_size": 16, "lr": 0.001, "width": 4, "feature_dim": 8},
            "autoencoder": {"epochs": 2, "batch_size": 16, "lr": 0.003, "width": 4, "feature_dim": 8, "seed": 0}}


def own_data_params(raw_dir: Path) -> dict:
    """params.yaml with the two folders as the grid's datasets, pretrain [vae], no baselines, stage 2
    [avae_b on vae] (the table's row), no toy stage, one seed, tiny sizes throughout: every stage
    runs once per dataset."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    folder = {"loader": "image_folder", "resolution": 32, "crop": "none"}
    raw["datasets"] = {"labelled": {**folder, "source": str(raw_dir / "labelled")},
                       "flat": {**folder, "source": str(raw_dir / "flat")}}
    raw["grid"] = {"datasets": ["labelled", "flat"], "seeds": [0], "pretrain": ["vae"], "baselines": [],
                   "stage2": [{"model": "avae_b", "export": "vae"}], "evaluate": ["avae_b"], "toy": []}
    raw["networks"] = {"width": 4, "latent_dim": 8, "mlp_hidden": 16}
    raw["train"].update({"iterations": 20, "batch_size": 32, "log_every": 5, "checkpoint_every": 10})
    raw["models"]["vae"].update({"beta": 1.0, "train": {"iterations": 20}})
    raw["evaluate"].update({"n_samples": 100, "batch_size": 50, "n_variance": 8, "variance_draws": 2, "is_splits": 2,
                            "diversity_pairs": 20, "critic_steps": 5, "critic_batch_size": 8, "grid_rows": 4,
                            "strip_steps": 4, "stats_cache": ""})
    raw.update(TINY_NET)
    return raw


def rows_without_weights(env: dict, monkeypatch) -> set[str]:
    """The rows whose pretrained weights the stages will not find with `env` (all of them offline)."""
    for key in ("TORCH_HOME", "INCEPTION_WEIGHTS"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.delenv("ALEXNET_WEIGHTS", raising=False)
    return {row for spec in evaluate.METRICS.values() for name in spec.weights
            if evaluate.weights_reason(name, EvaluateConfig()) for row in spec.row_names}


def test_dvc_repro_on_a_labelled_and_an_unlabelled_folder(tmp_path, monkeypatch):
    write_shapes(tmp_path / "raw" / "labelled", 40, labelled=True)
    write_shapes(tmp_path / "raw" / "flat", 40, labelled=False, seed=1)
    work = tmp_path / "repo"
    work.mkdir()
    for item in ("pipeline", "stages", "dvc.yaml", "pyproject.toml"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
    (work / "params.yaml").write_text(yaml.safe_dump(own_data_params(tmp_path / "raw"), sort_keys=False))
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(work), "HOME": str(tmp_path),
           "PYTHONDONTWRITEBYTECODE": "1", "TORCH_HOME": str(tmp_path / "torch"),  # no pretrained weights
           "INCEPTION_WEIGHTS": str(tmp_path / "absent.pt")}
    run = lambda *cmd: subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)  # noqa: E731
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        assert run(*cmd).returncode == 0

    before = run(sys.executable, "-m", "pipeline", "check")  # up front: the flat folder has no labels
    assert before.returncode == 0, before.stderr
    assert f"  flat: image data, no labels (from its raw folder {tmp_path / 'raw' / 'flat'})" in before.stdout
    assert "    missing: recon_accuracy, recon_accuracy_relative, fd_classifier, " in before.stdout
    assert f"  labelled: image data, 2 classes (from its raw folder {tmp_path / 'raw' / 'labelled'})" in before.stdout

    without_weights = rows_without_weights(env, monkeypatch)  # offline: NEEDS_WEIGHTS
    assert without_weights <= NEEDS_WEIGHTS
    out = run("dvc", "repro")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    df = pd.read_parquet(work / "metrics" / "results.parquet")
    assert set(df.dataset) == {"labelled", "flat"} and set(df.variant) == {"avae_b"}
    assert "failed" not in set(df.status)
    for (dataset, variant), cell in df.groupby(["dataset", "variant"]):
        by = cell.set_index("metric")
        assert set(by.index) == IMAGE_ROWS, (dataset, variant)  # every image metric has its row
        unlabelled = CLASSIFIER_ROWS if dataset == "flat" else set()
        missing = set(by.index[by.status == "missing"])
        assert missing == (without_weights | unlabelled), (dataset, variant, missing)
        assert all("flat has no labels" in by.reason[m] for m in unlabelled)
        not_applicable = by[by.status == "n/a"]
        assert all("deterministic" in r or "no encoder" in r for r in not_applicable.reason)  # the model's lack
        assert set(by.index[by.status == "ok"]) == IMAGE_ROWS - missing - set(not_applicable.index)
        assert {"fd_autoencoder", "mse", "diversity", "indep_critic"} <= set(by.index[by.status == "ok"])
    assert {"fd_classifier", "recon_accuracy"} <= set(df[(df.dataset == "labelled") & (df.status == "ok")].metric)

    table = (work / "metrics" / "table.md").read_text()
    assert "## labelled (" in table and "## flat (" in table and "fd_autoencoder (100) ↓" in table
    assert "- recon_accuracy, recon_accuracy_relative, fd_classifier, inception_score_classifier, " in table
    assert "_classifier missing: flat has no labels (its images lie directly in the folder" in table
    assert "data:image/png;base64," in (work / "metrics" / "report.html").read_text()
    record = yaml.safe_load((work / "classifiers" / "flat" / "classifier.json").read_text())
    assert record["applicable"] is False and record["autoencoder"]["file"] == "autoencoder.pt"
    assert "up to date" in run("dvc", "status").stdout
