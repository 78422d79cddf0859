"""`python -m pipeline diff` on two fixture revisions of a temporary git + dvc repository."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import diff

ROOT = Path(__file__).resolve().parents[1]


def summary(mse_vae: float, fd_gan: float) -> dict:
    return {"fashion_mnist": {"vae": {"mse": {"mean": mse_vae, "std": 0.002, "n": 2},
                                      "kl": {"mean": 20.0, "std": 0.5, "n": 2}},
                              "gan": {"fd_classifier": {"mean": fd_gan, "std": 1.0, "n": 2}}}}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def two_revisions(tmp_path):
    """A git + dvc repository with two commits of metrics/summary.json and params.yaml."""
    dvc = shutil.which("dvc") or str(Path(sys.executable).parent / "dvc")
    env_path = f"{Path(dvc).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    subprocess.run([dvc, "init", "-q"], cwd=repo, check=True)
    (repo / "dvc.yaml").write_text("metrics:\n  - metrics/summary.json\nparams:\n  - params.yaml\n")
    (repo / "metrics").mkdir()
    for mse, fd, iterations in ((0.050, 12.0, 1500), (0.044, 12.5, 3000)):
        (repo / "metrics" / "summary.json").write_text(json.dumps(summary(mse, fd)))
        (repo / "params.yaml").write_text(f"train:\n  iterations: {iterations}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"iterations {iterations}")
    return repo, env_path


def test_render_pure():
    metrics_diff = {"metrics/summary.json": {
        "d.m.mse.mean": {"old": 0.05, "new": 0.04, "diff": -0.01}, "d.m.mse.std": {"old": 0.005, "new": 0.004},
        "d.m.kl.mean": {"old": 3.0, "new": 3.0, "diff": 0}, "d.m.kl.std": {"old": 0.1, "new": 0.1},
        "d.g.fid.mean": {"old": None, "new": 40.0}, "d.g.fid.std": {"old": None, "new": 1.0}}}
    md = diff.render(metrics_diff, {"params.yaml": {"train.iterations": {"old": 1, "new": 2}}}, "a", "b")
    assert "| d | m | mse | 0.05 | 0.04 | -0.01 | -2.00 ⚠ |" in md
    assert "| d | g | fid | — | 40 | — | new |" in md
    assert "| kl |" not in md  # unchanged metrics are left out by default
    assert "| params.yaml | train.iterations | 1 | 2 |" in md


@pytest.mark.slow  # git + dvc subprocesses (~1 min on 2 cores)
def test_diff_between_two_fixture_revisions(two_revisions, monkeypatch):
    repo, env_path = two_revisions
    monkeypatch.setenv("PATH", env_path)
    md = diff.diff("HEAD~1", "HEAD", cwd=repo)
    assert "| fashion_mnist | vae | mse | 0.05 | 0.044 | -0.006 | -3.00 ⚠ |" in md
    assert "| fashion_mnist | gan | fd_classifier | 12 | 12.5 | +0.5 | +0.50 |" in md
    assert "| kl |" not in md
    assert "| params.yaml | train.iterations | 1500 | 3000 |" in md
    assert md.index("| mse |") < md.index("| fd_classifier |")  # largest change in std units first
    cli = subprocess.run([sys.executable, "-m", "pipeline", "diff", "HEAD~1", "HEAD"], cwd=repo, capture_output=True,
                         text=True, env={**os.environ, "PATH": env_path, "PYTHONPATH": str(ROOT)})
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout == md


@pytest.mark.slow
def test_diff_bad_revision_is_a_clear_error(two_revisions, monkeypatch):
    repo, env_path = two_revisions
    monkeypatch.setenv("PATH", env_path)
    with pytest.raises(RuntimeError, match="dvc metrics diff"):
        diff.diff("no-such-rev", cwd=repo)
