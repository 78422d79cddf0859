"""Checkpoints: the newest K kept, checksummed, loaded without running code, every RNG
restored; a run SIGKILLed at random steps resumes to bitwise the same weights and metrics;
deterministic runs are bitwise reproducible; a non-finite gradient stops the run."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline.config import parse_params
from pipeline.run import evaluate_cell, load_model, train_cell
from pipeline.training import CheckpointStore, TrainingDiverged, rng_state, set_rng_state
from tests.conftest import ROOT, tiny_params

CPU = torch.device("cpu")
KILLS = 4  # SIGKILLs per kill test run (quoted in the closing note)


def cfg(**train):
    base = {"iterations": 40, "batch_size": 16, "log_every": 5, "checkpoint_every": 10, "device": "cpu",
            "deterministic": True}
    return parse_params(tiny_params(train={**base, **train}))


def assert_same_weights(a: Path, b: Path) -> None:
    ma, _ = load_model(a / "model.pt")
    mb, _ = load_model(b / "model.pt")
    for (k, va), vb in zip(ma.state_dict().items(), mb.state_dict().values()):
        assert torch.equal(va, vb), k


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_only_the_newest_checkpoints_are_kept_each_with_a_checksum(toy_prepared, tmp_path):
    train_cell(cfg(keep_checkpoints=2), "toy2d", "vae", 0, tmp_path / "toy2d", tmp_path / "out", tmp_path / "ck")
    assert files(tmp_path / "ck") == ["step-00000030.pt", "step-00000030.pt.sha256",
                                      "step-00000040.pt", "step-00000040.pt.sha256"]


@pytest.mark.parametrize("damage", ["bit_flip", "truncate", "no_checksum"])
def test_a_damaged_newest_checkpoint_is_skipped_and_the_run_still_matches(damage, toy_prepared, tmp_path, capsys):
    params, data = cfg(keep_checkpoints=3), tmp_path / "toy2d"
    train_cell(params, "toy2d", "vae", 0, data, tmp_path / "straight", tmp_path / "ck_straight")
    train_cell(params, "toy2d", "vae", 0, data, tmp_path / "resumed", tmp_path / "ck", stop_at=35)  # "killed"
    newest = tmp_path / "ck" / "step-00000030.pt"
    blob = bytearray(newest.read_bytes())
    if damage == "bit_flip":
        blob[len(blob) // 2] ^= 0x10
        newest.write_bytes(bytes(blob))
    elif damage == "truncate":
        newest.write_bytes(bytes(blob[: len(blob) // 3]))
    else:
        newest.with_suffix(".pt.sha256").unlink()
    with pytest.warns(UserWarning, match="skipping checkpoint .*step-00000030.pt"):
        train_cell(params, "toy2d", "vae", 0, data, tmp_path / "resumed", tmp_path / "ck")
    assert "resuming from iteration 20" in capsys.readouterr().out
    assert_same_weights(tmp_path / "straight", tmp_path / "resumed")
    assert (tmp_path / "straight" / "train_log.csv").read_text() == (tmp_path / "resumed" / "train_log.csv").read_text()


@pytest.mark.parametrize("killed_at", [None, 35])
def test_a_rerun_after_its_outputs_were_removed_writes_them_all_again(killed_at, toy_prepared, tmp_path):
    """`dvc repro` deletes a stage's outputs before it reruns it; the checkpoints stay (persist)."""
    params, data = cfg(), tmp_path / "toy2d"
    train_cell(params, "toy2d", "vae", 0, data, tmp_path / "straight", tmp_path / "ck_straight")
    train_cell(params, "toy2d", "vae", 0, data, tmp_path / "rerun", tmp_path / "ck", stop_at=killed_at)
    shutil.rmtree(tmp_path / "rerun")
    train_cell(params, "toy2d", "vae", 0, data, tmp_path / "rerun", tmp_path / "ck")
    assert files(tmp_path / "rerun") == files(tmp_path / "straight")
    assert_same_weights(tmp_path / "straight", tmp_path / "rerun")
    assert (tmp_path / "straight" / "train_log.csv").read_text() == (tmp_path / "rerun" / "train_log.csv").read_text()


class _Payload:
    """Unpickling this would create a file: a stand-in for arbitrary code in a checkpoint."""

    def __reduce__(self):
        return (Path.touch, (Path(os.environ["PAYLOAD_MARKER"]),))


def test_a_checkpoint_needing_code_to_load_is_refused_without_running_it(tmp_path, monkeypatch):
    marker = tmp_path / "payload_ran"
    monkeypatch.setenv("PAYLOAD_MARKER", str(marker))
    store = CheckpointStore(tmp_path / "ck", 2)
    store.save({"iteration": 1, "evil": _Payload()}, 1)  # a valid checksum: only the content is unsafe
    with pytest.warns(UserWarning, match="cannot be loaded safely"):
        assert store.newest_valid(CPU, "test") is None
    assert not marker.exists()


def test_every_rng_is_saved_and_restored():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    np.random.standard_normal()  # leaves a cached Gaussian in NumPy's state
    state = rng_state(CPU)
    first = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3).tolist())
    set_rng_state(state, CPU)
    assert (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3).tolist()) == first


def test_deterministic_cpu_runs_are_bitwise_reproducible(image_prepared, tmp_path):
    raw = tiny_params(train={"iterations": 12, "batch_size": 16, "log_every": 4, "checkpoint_every": 12,
                             "device": "cpu", "deterministic": True})
    raw["networks"]["latent_dim"] = 4
    params = parse_params(raw)
    for run in ("a", "b"):
        train_cell(params, "fashion_mnist", "vae", 0, tmp_path / "fmnist", tmp_path / run, tmp_path / f"ck_{run}")
        assert torch.are_deterministic_algorithms_enabled()
    assert_same_weights(tmp_path / "a", tmp_path / "b")
    # the saved file too, byte for byte, so its DVC hash is the same in every repro
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()


def test_a_non_finite_gradient_stops_the_run_naming_it(toy_prepared, tmp_path, monkeypatch):
    from pipeline.methods.vae import VAE

    calls = {"n": 0}
    real_loss = VAE.vae_loss

    def loss_with_poisoned_gradient(self, x):  # the loss stays finite; from step 13 a gradient is NaN
        calls["n"] += 1
        terms = real_loss(self, x)
        if calls["n"] >= 13:
            tap = next(self.decoder.parameters()).sum()
            tap.register_hook(lambda g: g * float("inf"))  # 0 * inf on the way back
            terms["loss"] = terms["loss"] + 0.0 * tap
        return terms

    monkeypatch.setattr(VAE, "vae_loss", loss_with_poisoned_gradient)
    with pytest.raises(TrainingDiverged, match=r"vae/gradient became non-finite at iteration 13 .*\(iteration 10\)"):
        train_cell(cfg(iterations=40), "toy2d", "vae", 0, tmp_path / "toy2d", tmp_path / "out", tmp_path / "ck")
    assert CheckpointStore(tmp_path / "ck", 2).newest_iteration() == 10
    assert not (tmp_path / "out" / "model.pt").exists()


# ------------------------------------------------------------------ kill test


def train_command(params_file: Path, work: Path, name: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", "--params", str(params_file), "train", "toy2d", "vae", "0",
            "--data", str(work / "toy2d"), "--out", str(work / name), "--checkpoints", str(work / f"ck_{name}")]


def run_with_kills(command: list[str], checkpoints: Path, targets: list[int], rng: random.Random) -> list[int]:
    """Start `command`, SIGKILL it once its checkpoints pass each target (plus a random delay),
    restart it after every kill, and let the last run finish; returns the steps killed at."""
    killed_at = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for target in targets:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        store = CheckpointStore(checkpoints, 1)
        while proc.poll() is None and store.newest_iteration() < target:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.05))  # somewhere between checkpoints, or inside a save
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed_at.append(store.newest_iteration())
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return killed_at


@pytest.mark.slow
def test_sigkilled_at_random_steps_resumes_to_bitwise_the_same_weights_and_metrics(toy_prepared, tmp_path):
    raw = tiny_params(train={"iterations": 1500, "batch_size": 32, "log_every": 5, "checkpoint_every": 7,
                             "keep_checkpoints": 2, "device": "cpu", "threads": 1, "deterministic": True})
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    rng = random.Random(7)
    targets = sorted(rng.sample(range(20, 1300), KILLS))
    subprocess.run(train_command(params_file, tmp_path, "straight"), cwd=ROOT, check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at = run_with_kills(train_command(params_file, tmp_path, "killed"), tmp_path / "ck_killed", targets, rng)
    print(f"killed at checkpoints {killed_at} (targets {targets})")
    assert len(killed_at) >= KILLS - 1, f"the run finished before most kills landed: {killed_at}"
    assert_same_weights(tmp_path / "straight", tmp_path / "killed")
    assert (tmp_path / "straight" / "train_log.csv").read_text() == (tmp_path / "killed" / "train_log.csv").read_text()
    params = parse_params(raw)
    metrics = [evaluate_cell(params, "toy2d", "vae", 0, tmp_path / "toy2d", tmp_path / name, tmp_path / f"eval_{name}")
               for name in ("straight", "killed")]
    a, b = (m[["metric", "value", "status"]].reset_index(drop=True) for m in metrics)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert (a.status == "ok").sum() >= 3
