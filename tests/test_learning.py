"""Learning checks on toy2d (AVAE §5.1): each fails if its method is broken."""

import numpy as np
import pytest
import torch

from pipeline import metrics
from pipeline.config import parse_params
from pipeline.datainfo import to_model_scale
from pipeline.methods import build_method
from pipeline.run import load_model, train_cell
from tests.conftest import tiny_params

pytestmark = pytest.mark.slow


def toy_params(iterations: int):
    return parse_params(tiny_params(
        networks={"width": 4, "latent_dim": 1, "mlp_hidden": 128},  # AVAE §5.1: 1-D latent, MLPs of 128
        train={"iterations": iterations, "batch_size": 64, "log_every": 100, "checkpoint_every": 1000,
               "device": "cpu"}))


def fd_to_data(method, prepared, n=2000):
    with torch.no_grad():
        samples = method.sample(n).numpy()
    return metrics.frechet_distance(metrics.feature_stats(samples), metrics.feature_stats(prepared.x("train")))


def test_vae_beats_predicting_the_mean(toy_prepared, tmp_path):
    params = toy_params(1500)
    train_cell(params, "toy2d", "vae", 0, tmp_path / "toy2d", tmp_path / "vae", tmp_path / "ck")
    vae, _ = load_model(tmp_path / "vae" / "model.pt")
    x = to_model_scale(torch.from_numpy(np.asarray(toy_prepared.x("test"))), toy_prepared.info)
    recon_mse = metrics.mse(x, vae.reconstruct(x))
    mean_mse = metrics.mse(x, x.mean(0, keepdim=True).expand_as(x))
    assert recon_mse < 0.35 * mean_mse, (recon_mse, mean_mse)


def test_avae_generator_moves_to_the_data(toy_prepared, tmp_path):
    params = toy_params(1500)
    train_cell(params, "toy2d", "vae", 0, tmp_path / "toy2d", tmp_path / "vae", tmp_path / "ck_vae")
    torch.manual_seed(0)
    from pipeline.export import load_vae_export

    spec = params.model("avae_b", "toy2d")
    vae = load_vae_export(tmp_path / "vae" / "export.pt")
    initial = build_method(spec, toy_prepared.info, params.networks, vae).eval()
    fd_initial = fd_to_data(initial, toy_prepared)
    train_cell(params, "toy2d", "avae_b", 0, tmp_path / "toy2d", tmp_path / "avae", tmp_path / "ck",
               tmp_path / "vae")
    trained, _ = load_model(tmp_path / "avae" / "model.pt")
    fd_trained = fd_to_data(trained, toy_prepared)
    assert fd_trained < 0.1 * fd_initial, (fd_trained, fd_initial)
    # and its reconstructions follow the encoder: x1 (the coordinate the 1-D code carries) is kept
    x = torch.from_numpy(np.asarray(toy_prepared.x("test")))
    recon = trained.reconstruct(x)
    assert np.corrcoef(x[:, 0], recon[:, 0])[0, 1] > 0.9
