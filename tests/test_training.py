"""The generic loop: resume to the same result, stop on NaN keeping the last good checkpoint."""

import pytest
import torch

from pipeline.config import parse_params
from pipeline.run import load_model, train_cell
from pipeline.training import CheckpointStore, TrainingDiverged
from tests.conftest import tiny_params


def cfg(**train):
    base = {"iterations": 30, "batch_size": 16, "log_every": 5, "checkpoint_every": 10, "device": "cpu"}
    return parse_params(tiny_params(train={**base, **train}))


@pytest.mark.parametrize("model", ["vae", "avae_b"])
def test_killed_run_resumes_to_the_same_result(model, toy_prepared, tmp_path):
    params = cfg()
    data = tmp_path / "toy2d"
    vae_dir = None
    if model != "vae":
        vae_dir = tmp_path / "vae"
        train_cell(params, "toy2d", "vae", 0, data, vae_dir, tmp_path / "ck_vae")
    train_cell(params, "toy2d", model, 0, data, tmp_path / "straight", tmp_path / "ck_straight", vae_dir)
    # "kill" at iteration 17 (last checkpoint at 10), then run again: it resumes from 10
    train_cell(params, "toy2d", model, 0, data, tmp_path / "resumed", tmp_path / "ck_resumed", vae_dir, stop_at=17)
    assert not (tmp_path / "resumed" / "model.pt").exists()
    train_cell(params, "toy2d", model, 0, data, tmp_path / "resumed", tmp_path / "ck_resumed", vae_dir)
    a, _ = load_model(tmp_path / "straight" / "model.pt")
    b, _ = load_model(tmp_path / "resumed" / "model.pt")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert (tmp_path / "straight" / "train_log.csv").read_text() == (tmp_path / "resumed" / "train_log.csv").read_text()


def test_checkpoint_of_another_configuration_is_ignored(toy_prepared, tmp_path, capsys):
    data = tmp_path / "toy2d"
    train_cell(cfg(), "toy2d", "vae", 0, data, tmp_path / "a", tmp_path / "ck", stop_at=12)
    train_cell(cfg(batch_size=32), "toy2d", "vae", 0, data, tmp_path / "a", tmp_path / "ck")
    assert "ignoring checkpoint" in capsys.readouterr().out


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(toy_prepared, tmp_path, monkeypatch):
    from pipeline.methods.vae import VAE

    calls = {"n": 0}
    real_loss = VAE.vae_loss

    def diverging_loss(self, x):  # finite for 23 steps, then NaN
        calls["n"] += 1
        terms = real_loss(self, x)
        return {**terms, "loss": terms["loss"] * (float("nan") if calls["n"] > 23 else 1.0)}

    monkeypatch.setattr(VAE, "vae_loss", diverging_loss)
    params = cfg(iterations=60)
    with pytest.raises(TrainingDiverged, match=r"vae/loss became non-finite at iteration 24 .*\(iteration 20\)"):
        train_cell(params, "toy2d", "vae", 0, tmp_path / "toy2d", tmp_path / "out", tmp_path / "ck")
    assert not (tmp_path / "out" / "model.pt").exists()
    newest = CheckpointStore(tmp_path / "ck", 2)
    assert newest.newest_iteration() == 20
    state = newest.newest_valid(torch.device("cpu"), "test")
    assert all(torch.isfinite(v).all() for v in state["method"].values() if v.is_floating_point())


def test_phases_update_their_modules_in_the_loop(toy_prepared, tmp_path):
    params = cfg(iterations=3)
    train_cell(params, "toy2d", "vae", 0, tmp_path / "toy2d", tmp_path / "vae", tmp_path / "ck_vae")
    before, _ = load_model(tmp_path / "vae" / "model.pt")
    method = train_cell(params, "toy2d", "avae_b", 0, tmp_path / "toy2d", tmp_path / "avae", tmp_path / "ck",
                        tmp_path / "vae")
    for (k, a), b in zip(before.encoder.state_dict().items(), method.vae.encoder.state_dict().values()):
        assert torch.equal(a, b), f"frozen encoder changed: {k}"
