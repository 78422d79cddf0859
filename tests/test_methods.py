"""AVAE's own checks (the contract every method passes is tests/test_method_contract.py): the
frozen encoder never learns, the latent term reaches the generator through it, and ξ changes
samples of a fixed code."""

from __future__ import annotations

import torch

from pipeline.data import BatchSampler
from pipeline.export import FrozenVAE
from pipeline.losses import latent_recon_b
from tests.conftest import TINY_NET
from tests.method_examples import build_example


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before, module):
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


def test_avae_encoder_receives_no_gradient_from_the_generator_loss(image_prepared, tmp_path):
    method = build_example("avae", "b", image_prepared.info, tmp_path).train()
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
    method = build_example("avae", "b", image_prepared.info, tmp_path).train()
    z = method.prior(4)
    mu, log_sigma = method.vae.encoder(method.decode(z))
    latent_recon_b(mu, z, log_sigma).mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.generator.parameters())


def test_avae_xi_changes_samples_for_a_fixed_code(image_prepared, tmp_path):
    with_xi = build_example("avae", "xi_a", image_prepared.info, tmp_path / "xi").eval()
    without = build_example("avae", "a", image_prepared.info, tmp_path / "no_xi").eval()
    z = torch.randn(1, TINY_NET.latent_dim).repeat(2, 1)
    with torch.no_grad():
        a, b = with_xi.decode(z)
        c, d = without.decode(z)
    assert not torch.equal(a, b) and torch.equal(c, d)
