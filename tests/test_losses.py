"""Loss formulas against hand-computed values."""

import math

import torch

from pipeline import losses


def test_kl_standard_normal_hand_value():
    # dims: (mu=1, sigma=1) -> ½(1+1-1-0)=0.5 ; (mu=0, sigma=e^-1) -> ½(e^-2 + 0 - 1 + 2) = ½(1+e^-2)
    mu = torch.tensor([[1.0, 0.0]])
    log_sigma = torch.tensor([[0.0, -1.0]])
    expected = 0.5 + 0.5 * (1 + math.exp(-2))
    assert torch.allclose(losses.kl_standard_normal(mu, log_sigma), torch.tensor([expected]))


def test_kl_is_zero_at_the_prior():
    assert losses.kl_standard_normal(torch.zeros(3, 4), torch.zeros(3, 4)).abs().max() < 1e-7


def test_sum_squares_recon():
    x = torch.zeros(2, 1, 2, 2)
    x_hat = torch.tensor([1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0]).view(2, 1, 2, 2)
    assert torch.allclose(losses.sum_squares_recon(x_hat, x), torch.tensor([2.5, 4.5]))


def test_log_mse_recon():
    x = torch.zeros(2, 4)
    x_hat = torch.full((2, 4), 2.0)  # MSE over batch = 4, N = 4 -> 2·log 4 per example
    assert torch.allclose(losses.log_mse_recon(x_hat, x), torch.full((2,), 2 * math.log(4.0)))


def test_latent_recon_a_hand_value():
    mu_fake = torch.tensor([[1.0, 2.0]])
    z = torch.tensor([[0.0, 1.0]])
    log_sigma = torch.log(torch.tensor([[0.5, 2.0]]))
    # ½((1/0.5)² + (1/2)²) = ½(4 + 0.25)
    assert torch.allclose(losses.latent_recon_a(mu_fake, z, log_sigma), torch.tensor([2.125]))


def test_latent_recon_b_hand_value():
    mu_fake = torch.tensor([[1.0, 0.0]])
    z = torch.tensor([[2.0, 3.0]])
    log_sigma = torch.log(torch.tensor([[0.6, 1.0]]))
    # dim 1: √(1-0.36)=0.8 -> (1 - 1.6)/0.6 = -1 -> 1 ; dim 2: sigma=1 -> shrink 0 -> (0-0)/1 = 0
    assert torch.allclose(losses.latent_recon_b(mu_fake, z, log_sigma), torch.tensor([0.5]))


def test_latent_recon_b_optimum_matches_posterior_mean_distribution():
    # AVAE eq. 16: the optimum mu_E(G(z)) = √(1 − sigma²) z gives zero loss
    z = torch.randn(5, 3)
    log_sigma = torch.log(torch.tensor([0.3, 0.5, 0.9])).expand(5, 3)
    mu = torch.sqrt(1 - torch.exp(2 * log_sigma)) * z
    assert losses.latent_recon_b(mu, z, log_sigma).abs().max() < 1e-6


def test_avae_critic_probability_of_generated():
    # C = sigmoid(logit) is P(generated): L_C = −log(1 − C(real)) − log C(fake)
    logit_real, logit_fake = torch.tensor([0.3]), torch.tensor([-1.2])
    c_real, c_fake = torch.sigmoid(logit_real), torch.sigmoid(logit_fake)
    expected = -torch.log(1 - c_real) - torch.log(c_fake)
    assert torch.allclose(losses.avae_critic_loss(logit_real, logit_fake), expected)


def test_optimal_critic_logit_is_log_density_ratio():
    # AVAE eq. 14: C* = p_G / (p + p_G) so logit C* = log(p_G / p); L_M is that logit.
    p, p_g = 0.2, 0.6
    c_star = p_g / (p + p_g)
    logit = torch.logit(torch.tensor(c_star))
    assert torch.allclose(logit, torch.tensor(math.log(p_g / p)))
    assert torch.allclose(losses.avae_manifold_loss(logit.view(1)), torch.tensor(math.log(3.0)))


def test_gan_losses_hand_values():
    logit_real, logit_fake = torch.tensor([2.0]), torch.tensor([-1.0])
    d_real, d_fake = torch.sigmoid(logit_real), torch.sigmoid(logit_fake)
    assert torch.allclose(losses.gan_discriminator_loss(logit_real, logit_fake),
                          -torch.log(d_real) - torch.log(1 - d_fake))
    assert torch.allclose(losses.gan_generator_loss(logit_fake), -torch.log(d_fake))


def test_gaussian_nll_matches_torch_distribution():
    z, mu, log_sigma = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3) * 0.3
    expected = -torch.distributions.Normal(mu, log_sigma.exp()).log_prob(z).sum(1)
    assert torch.allclose(losses.gaussian_nll(z, mu, log_sigma), expected, atol=1e-5)
