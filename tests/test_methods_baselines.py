"""The single-stage baselines (WGAN-GP, VAE/GAN, BiGAN, AGE, α-GAN): loss formulas on hand-computed
values, their wiring into each method, the papers' hyper-parameters and networks (the contract every
method passes is tests/test_method_contract.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from pipeline import losses
from pipeline.config import load_params
from pipeline.data import BatchSampler
from pipeline.datainfo import DataInfo
from pipeline.networks import build_critic
from pipeline.networks.critics import (DETERMINISTIC_LOG_SIGMA, CodeDiscriminator, DeterministicEncoder,
                                     JointDiscriminator, replace_batch_norm)
from pipeline.schema import ConfigError
from pipeline.sections import NetworkConfig
from tests.conftest import ROOT, TINY_NET
from tests.method_examples import build_example

EXAMPLE = {"wgan_gp": ("wgan_gp", "wgan_gp"), "vae_gan": ("vae_gan", "vae_gan"), "bigan": ("bigan", "bigan"),
           "age": ("age", "age"), "alpha_gan": ("alpha_gan", "alpha_gan"),
           "alpha_gan_kl": ("alpha_gan", "empirical_kl")}  # model -> (method, its example)


def make(name: str, info: DataInfo, net: NetworkConfig = TINY_NET, **overrides):
    method, example = EXAMPLE[name]
    return build_example(method, example, info, Path("unused"), net, **overrides)


def batch(prepared, n: int = 8, split: str = "train") -> torch.Tensor:
    return BatchSampler(prepared.x(split), prepared.info, n, torch.device("cpu"), 0).next()


# ------------------------------------------------------------------ loss formulas


def test_gradient_penalty_of_a_linear_critic_is_known_exactly():
    # C(x) = w·x + b has input gradient w everywhere: GP = (‖w‖ − 1)² = (5 − 1)² for w = (3, 4, 0, 0)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(4, 1))
    with torch.no_grad():
        critic[1].weight.copy_(torch.tensor([[3.0, 4.0, 0.0, 0.0]]))
    real, fake = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    assert torch.allclose(losses.gradient_penalty(critic, real, fake), torch.full((5,), 16.0))
    with torch.no_grad():
        critic[1].weight.copy_(torch.tensor([[0.6, 0.8, 0.0, 0.0]]))  # unit norm: no penalty
    assert losses.gradient_penalty(critic, real, fake).abs().max() < 1e-10


def test_gradient_penalty_trains_the_critic():
    critic = nn.Linear(2, 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[3.0, 4.0]]))
    losses.gradient_penalty(critic, torch.randn(4, 2), torch.randn(4, 2)).mean().backward()
    # d/dw (‖w‖ − 1)² = 2(‖w‖ − 1)·w/‖w‖ = 2·4·(0.6, 0.8)
    assert torch.allclose(critic.weight.grad, torch.tensor([[4.8, 6.4]]))


def test_wasserstein_losses_hand_values():
    real, fake = torch.tensor([[1.0], [3.0]]), torch.tensor([[-1.0], [0.0]])
    assert math.isclose(float(losses.wasserstein_critic_loss(real, fake)), -0.5 - 2.0)
    assert math.isclose(float(losses.wasserstein_generator_loss(fake)), 0.5)


def test_synthetic_likelihood_ratio_hand_value():
    # D(x) = 0.8: R_D = −log 0.8 + log 0.2 = log 0.25, which is −logit D(x) = −log 4
    logit = torch.tensor([math.log(4.0), 0.0])
    expected = torch.tensor([math.log(0.25), 0.0])
    assert torch.allclose(losses.synthetic_likelihood_ratio(logit), expected, atol=1e-6)
    big = torch.tensor([40.0, -40.0])  # stable far from 0.5
    assert torch.allclose(losses.synthetic_likelihood_ratio(big), -big)


def test_discriminator_loss_with_reconstructions_and_samples_hand_value():
    # D(x) = 0.8, D(x̂) = 0.25, D(G(z)) = 0.5: −log 0.8 − log 0.75 − log 0.5
    logit = lambda p: torch.tensor([math.log(p / (1 - p))])  # noqa: E731
    value = losses.gan_discriminator_loss_recon_and_samples(logit(0.8), logit(0.25), logit(0.5))
    assert math.isclose(float(value), -math.log(0.8) - math.log(0.75) - math.log(0.5), rel_tol=1e-6)


def test_empirical_kl_hand_value():
    # dim 1: m = 2, s² = 1 -> (1 + 4)/2 − 0 − ½ = 2 ; dim 2: m = 1, s² = 1 -> 1 − ½ = 0.5
    z = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
    assert math.isclose(float(losses.empirical_kl(z)), 2.5, rel_tol=1e-6)
    # s = 2, m = 0: 4/2 − log 2 − ½
    z = torch.tensor([[2.0], [-2.0]])
    assert math.isclose(float(losses.empirical_kl(z)), 1.5 - math.log(2.0), rel_tol=1e-6)


def test_empirical_kl_is_near_zero_on_prior_samples():
    assert abs(float(losses.empirical_kl(torch.randn(200_000, 3)))) < 1e-3


def test_cosine_distance_hand_values():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[1.0, 1.0], [-2.0, 0.0], [0.0, 5.0]])
    assert torch.allclose(losses.cosine_distance(a, b), torch.tensor([1 - 1 / math.sqrt(2), 2.0, 0.0]))


def test_l1_recon_is_per_pixel_mean_absolute_error():
    x = torch.zeros(2, 1, 2, 2)
    x_hat = torch.tensor([1.0, -2.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]).view(2, 1, 2, 2)
    assert torch.allclose(losses.l1_recon(x_hat, x), torch.tensor([1.0, 0.0]))


# ------------------------------------------------------------------ method wiring of the formulas


def test_alpha_gan_generator_terms_are_r_d(image_prepared):
    m = make("alpha_gan", image_prepared.info).train()
    x = batch(image_prepared)
    torch.manual_seed(3)
    terms = m.generator_loss(x)
    torch.manual_seed(3)
    with torch.no_grad():
        x_hat, x_p = m.generator(m.encoder(x)), m.generator(m.prior(len(x)))
        logit_recon, logit_sample = m.discriminator(x_hat), m.discriminator(x_p)
    # R_D(x) = −log D + log(1 − D) = −logit D
    assert torch.allclose(terms["adv_recon"], -logit_recon.mean(), atol=1e-5)
    assert torch.allclose(terms["adv_sample"], -logit_sample.mean(), atol=1e-5)
    recon = (x_hat - x).abs().mean()
    assert torch.allclose(terms["loss"], 10 * recon - logit_recon.mean() - logit_sample.mean(), atol=1e-4)


def test_alpha_gan_encoder_terms(image_prepared):
    x = batch(image_prepared)
    m = make("alpha_gan", image_prepared.info).train()
    terms = m.encoder_loss(x)
    with torch.no_grad():
        z_hat = m.encoder(x)
        r_c = -m.code_discriminator(z_hat).mean()  # R_C = −logit CZ
        recon = (m.generator(z_hat) - x).abs().mean()
    assert torch.allclose(terms["loss"], 10 * recon + r_c, atol=1e-4)
    kl = make("alpha_gan_kl", image_prepared.info).train()
    assert kl.code_discriminator is None and [p.name for p in kl.phases()] == ["encoder", "generator",
                                                                                "discriminator"]
    terms = kl.encoder_loss(x)
    with torch.no_grad():
        z_hat = kl.encoder(x)
        m_i, var_i = z_hat.mean(0), z_hat.var(0, unbiased=False)
        eq18 = (0.5 * (var_i + m_i ** 2) - 0.5 * torch.log(var_i) - 0.5).sum()
        recon = (kl.generator(z_hat) - x).abs().mean()
    assert torch.allclose(terms["latent"], eq18 / TINY_NET.latent_dim, atol=1e-5)  # App. D: eq. 18 / latent size
    assert torch.allclose(terms["loss"], 10 * recon + eq18 / TINY_NET.latent_dim, atol=1e-4)


def test_age_terms_and_sphere(image_prepared):
    m = make("age", image_prepared.info).train()
    z = m.prior(50)
    assert torch.allclose(z.norm(dim=1), torch.ones(50))
    x = batch(image_prepared)
    assert torch.allclose(m.encoder(x).norm(dim=1), torch.ones(len(x)))
    torch.manual_seed(5)
    terms = m.generator_loss(x)
    torch.manual_seed(5)
    with torch.no_grad():
        z = m.prior(len(x))
        z_fake = m.encoder(m.generator(z))
    cos = (z_fake * z).sum(1)  # both unit vectors
    assert torch.allclose(terms["code_recon"], (1 - cos).mean(), atol=1e-5)
    assert torch.allclose(terms["kl_fake"], losses.empirical_kl(z_fake) / TINY_NET.latent_dim, atol=1e-5)
    assert torch.allclose(terms["loss"], terms["kl_fake"] + 10 * terms["code_recon"], atol=1e-5)
    enc = m.encoder_loss(x)  # the encoder pulls data codes in and pushes sample codes out
    assert torch.allclose(enc["loss"], enc["kl_real"] - enc["kl_fake"] + 100 * enc["data_recon"], atol=1e-4)


def test_vae_gan_reconstruction_lives_in_a_hidden_layer(toy_prepared, image_prepared):
    for prepared in (toy_prepared, image_prepared):
        critic = build_critic(prepared.info, TINY_NET)
        x = batch(prepared)
        head = critic.head if prepared.info.kind == "image" else critic.net[-1]
        assert torch.allclose(head(critic(x, hidden=True)), critic(x))
        assert critic(x, hidden=True).shape[1] > 1  # a hidden layer, not the logit
    m = make("vae_gan", image_prepared.info).train()
    x, x_tilde = batch(image_prepared), batch(image_prepared, split="test")
    with torch.no_grad():
        # Larsen et al.'s code passes [x̃, x] as one batch: batch norm normalises them together
        h_tilde, h = m.discriminator.features(torch.cat([x_tilde, x])).split(len(x))
        assert torch.allclose(m.hidden_recon(x_tilde, x), 0.5 * ((h_tilde - h) ** 2).sum(1).mean(), rtol=1e-5)
        separate = 0.5 * ((m.discriminator.features(x_tilde) - m.discriminator.features(x)) ** 2).sum(1).mean()
        assert not torch.allclose(m.hidden_recon(x_tilde, x), separate, rtol=1e-3)  # each batch its own statistics


def test_bigan_losses_are_cross_entropies_with_inverted_labels(image_prepared):
    m = make("bigan", image_prepared.info).train()
    x = batch(image_prepared)
    torch.manual_seed(1)
    d_terms = m.discriminator_loss(x)
    torch.manual_seed(1)
    eg_terms = m.encoder_generator_loss(x)
    torch.manual_seed(1)
    with torch.no_grad():
        z = m.prior(len(x))
        p_real = torch.sigmoid(m.discriminator(x, m.encoder(x)))
        p_fake = torch.sigmoid(m.discriminator(m.generator(z), z))
    assert torch.allclose(d_terms["loss"], -(p_real.log().mean() + (1 - p_fake).log().mean()), atol=1e-5)
    assert torch.allclose(eg_terms["loss"], -((1 - p_real).log().mean() + p_fake.log().mean()), atol=1e-5)


def test_hyper_parameters_of_the_papers():
    info = DataInfo("toy2d", "vector", (2,), "raw", 0)
    net = NetworkConfig(width=4, latent_dim=4, mlp_hidden=16)
    steps = {n: {p.name: (p.steps, p.betas, p.lr) for p in make(n, info, net).phases()} for n in EXAMPLE}
    assert steps["wgan_gp"]["critic"] == (5, (0.5, 0.9), 1e-4) and steps["wgan_gp"]["generator"][0] == 1
    assert make("wgan_gp", info, net).config.penalty == 10.0
    assert steps["alpha_gan"] == {"encoder": (2, (0.5, 0.9), 1e-4), "generator": (2, (0.5, 0.9), 1e-4),
                                  "discriminator": (1, (0.5, 0.9), 5e-4),
                                  "code_discriminator": (1, (0.5, 0.9), 5e-4)}
    assert steps["age"]["generator"][0] > steps["age"]["encoder"][0]
    cz = make("alpha_gan", info, net).code_discriminator
    linears = [m for m in cz.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [750, 750, 750, 1]
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in cz.modules())
    assert make("vae_gan", info, net).config.gamma == 0.01


def test_wgan_gp_critic_has_no_batch_norm_and_treats_examples_independently(image_prepared):
    m = make("wgan_gp", image_prepared.info).train()
    assert not any(isinstance(mod, nn.BatchNorm2d) for mod in m.critic.modules())
    x = batch(image_prepared, 8)
    with torch.no_grad():
        assert torch.allclose(m.critic(x)[:4], m.critic(x[:4]), atol=1e-5)
    kept = replace_batch_norm(build_critic(image_prepared.info, TINY_NET), "batch")
    assert any(isinstance(mod, nn.BatchNorm2d) for mod in kept.modules())
    with pytest.raises(ValueError, match="norm"):
        replace_batch_norm(kept, "instance")


# ------------------------------------------------------------------ contracts


def test_alpha_gan_encoder_step_leaves_both_discriminators_unchanged(image_prepared):
    m = make("alpha_gan", image_prepared.info).train()
    encoder_phase = m.phases()[0]
    assert encoder_phase.name == "encoder" and encoder_phase.modules == [m.encoder]
    for p in m.parameters():
        p.requires_grad_(False)
    m.encoder.requires_grad_(True)
    encoder_phase.loss(batch(image_prepared))["loss"].backward()
    assert all(p.grad is None for mod in (m.discriminator, m.code_discriminator, m.generator)
               for p in mod.parameters())
    assert all(p.grad is not None for p in m.encoder.parameters())


@pytest.mark.parametrize("resolution,channels", [(32, 1), (64, 3)])
def test_joint_networks_at_32_and_64_px(resolution, channels):
    info = DataInfo("img", "image", (channels, resolution, resolution), "[-1,1]", 0)
    net = NetworkConfig(width=4, latent_dim=6, mlp_hidden=16)
    x, z = torch.randn(3, channels, resolution, resolution), torch.randn(3, 6)
    assert JointDiscriminator(info, net)(x, z).shape == (3, 1)
    assert DeterministicEncoder(info, net)(x).shape == (3, 6)
    assert torch.all(DeterministicEncoder(info, net).posterior(x)[1] == DETERMINISTIC_LOG_SIGMA)  # a point mass
    assert CodeDiscriminator(6)(z).shape == (3, 1)
    toy = DataInfo("toy2d", "vector", (2,), "raw", 0)
    assert JointDiscriminator(toy, net)(torch.randn(3, 2), z).shape == (3, 1)


def test_bad_configs_are_rejected_with_the_key():
    info = DataInfo("toy2d", "vector", (2,), "raw", 0)
    with pytest.raises(ConfigError, match="latent_dim"):
        make("age", info, NetworkConfig(width=4, latent_dim=1, mlp_hidden=8))
    with pytest.raises(ConfigError, match="latent_regulariser"):
        make("alpha_gan", info, latent_regulariser="kl")
    with pytest.raises(ConfigError, match="critic_steps"):
        make("wgan_gp", info, critic_steps=0)
    with pytest.raises(ConfigError, match="not a known key"):
        make("vae_gan", info, gama=0.1)


@pytest.mark.parametrize("path", ["params.yaml", "params/alpha_gan.yaml"])
def test_params_files_define_the_baselines(path):
    params = load_params(ROOT / path)
    for name in ["wgan_gp", "age", "alpha_gan", "alpha_gan_kl"]:
        assert params.models[name]["method"] == EXAMPLE[name][0]
    assert params.models["alpha_gan_kl"]["latent_regulariser"] == "empirical_kl"
    for name in ["wgan_gp", "age", "alpha_gan"]:
        assert name in params.grid.baselines and name in params.grid.evaluate
