"""Per-method contracts: outputs, which parameters each phase touches, eval is pure,
the frozen encoder never learns, save/load round-trips."""

from __future__ import annotations

import copy

import pytest
import torch

from pipeline.config import parse_params
from pipeline.data import BatchSampler
from pipeline.export import FrozenVAE, export_vae, load_vae_export
from pipeline.methods import REGISTRY, build_method
from pipeline.run import load_model, train_cell
from pipeline.sections import ModelSpec
from tests.conftest import TINY_NET, assert_each_phase_moves_only_its_modules, tiny_params

MODELS = {"vae": {"method": "vae"}, "vae_log_mse_encoder_sigma":
          {"method": "vae", "reconstruction": "log_mse", "sigma": "encoder"},
          "gan": {"method": "gan"}, "avae_xi_a": {"method": "avae", "xi": True, "latent_loss": "a"},
          "avae_a": {"method": "avae", "latent_loss": "a"}, "avae_b": {"method": "avae", "latent_loss": "b"}}


def make(name: str, prepared, tmp_path):
    raw = tiny_params()
    raw["models"][name] = MODELS[name]
    spec = parse_params(raw).model(name, prepared.info.name)
    vae = None
    if REGISTRY[spec.method].needs_vae:
        stage1 = build_method(ModelSpec("vae", "vae", REGISTRY["vae"].config_cls()), prepared.info, TINY_NET)
        export_vae(stage1, tmp_path / "export.pt", {})
        vae = load_vae_export(tmp_path / "export.pt")
    return build_method(spec, prepared.info, TINY_NET, vae)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before, module):
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


@pytest.mark.parametrize("name", list(MODELS))
def test_output_contract(name, image_prepared, tmp_path):
    method = make(name, image_prepared, tmp_path).eval()
    with torch.no_grad():
        samples = method.sample(5)
    assert samples.shape == (5, 1, 32, 32) and samples.abs().max() <= 1
    x = BatchSampler(image_prepared.x("test"), image_prepared.info, 6, torch.device("cpu"), 0).next()
    recon = method.reconstruct(x)
    if method.encode(x) is None:
        assert recon is None
    else:
        assert recon.shape == x.shape
        mu, log_sigma = method.encode(x)
        assert mu.shape == log_sigma.shape == (6, TINY_NET.latent_dim)


@pytest.mark.parametrize("name", list(MODELS))
def test_each_phase_changes_only_its_modules(name, image_prepared, tmp_path):
    method = make(name, image_prepared, tmp_path).train()
    x = BatchSampler(image_prepared.x("train"), image_prepared.info, 8, torch.device("cpu"), 0).next()
    assert_each_phase_moves_only_its_modules(method, x)


@pytest.mark.parametrize("name", list(MODELS))
def test_eval_changes_nothing(name, image_prepared, tmp_path):
    method = make(name, image_prepared, tmp_path).eval()
    before = snapshot(method)
    x = BatchSampler(image_prepared.x("test"), image_prepared.info, 8, torch.device("cpu"), 0).next()
    with torch.no_grad():
        method.sample(8)
        method.reconstruct(x)
    assert not changed(before, method)


def test_avae_encoder_receives_no_gradient_from_the_generator_loss(image_prepared, tmp_path):
    method = make("avae_b", image_prepared, tmp_path).train()
    assert isinstance(method.vae, FrozenVAE) and not method.vae.training
    frozen_before = snapshot(method.vae)
    x = BatchSampler(image_prepared.x("train"), image_prepared.info, 8, torch.device("cpu"), 0).next()
    generator_phase = [p for p in method.phases() if p.name == "generator"][0]
    terms = generator_phase.loss(x)
    terms["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in method.vae.parameters())
    assert any(p.grad is not None for p in method.generator.parameters())
    method.train()  # the frozen VAE stays in eval mode (batch-norm statistics frozen)
    assert not method.vae.training
    assert not changed(frozen_before, method.vae)


def test_avae_generator_gradient_flows_through_the_frozen_encoder(image_prepared, tmp_path):
    # the latent term must reach the generator through E (otherwise L_Z would be inert)
    method = make("avae_b", image_prepared, tmp_path).train()
    z = method.prior(4)
    fake = method.decode(z)
    mu, log_sigma = method.vae.encoder(fake)
    from pipeline.losses import latent_recon_b
    latent_recon_b(mu, z, log_sigma).mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.generator.parameters())


def test_avae_xi_changes_samples_for_a_fixed_code(image_prepared, tmp_path):
    with_xi = make("avae_xi_a", image_prepared, tmp_path).eval()
    without = make("avae_a", image_prepared, tmp_path).eval()
    z = torch.randn(1, TINY_NET.latent_dim).repeat(2, 1)
    with torch.no_grad():
        a, b = with_xi.decode(z)
        c, d = without.decode(z)
    assert not torch.equal(a, b) and torch.equal(c, d)


@pytest.mark.parametrize("model", ["vae", "gan", "avae_b"])
def test_train_cell_save_load_roundtrip(model, toy_prepared, tmp_path):
    params = parse_params(tiny_params(train={"iterations": 6, "batch_size": 16, "log_every": 3,
                                             "checkpoint_every": 3, "device": "cpu"}))
    data_dir = tmp_path / "toy2d"
    vae_dir = tmp_path / "vae"
    if model != "vae":
        train_cell(params, "toy2d", "vae", 0, data_dir, vae_dir, tmp_path / "ck_vae")
    method = train_cell(params, "toy2d", model, 0, data_dir, tmp_path / model, tmp_path / f"ck_{model}",
                        vae_dir if model != "vae" else None)
    loaded, blob = load_model(tmp_path / model / "model.pt")
    assert blob["iterations"] == 6
    for (k, a), (k2, b) in zip(method.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a.cpu(), b)
    assert (tmp_path / model / "train_log.csv").read_text().startswith("iteration,")
    if model == "vae":
        frozen = load_vae_export(tmp_path / "vae" / "export.pt")
        assert torch.equal(frozen.encoder.body.net[0].weight, method.encoder.body.net[0].weight)
