"""Loss terms shared by methods. Per-example terms sum over dimensions; callers average.

Conventions: critic outputs are logits. For AVAE's critic C (AVAE eq. 13) the sigmoid is the
probability that x is *generated*; for a standard GAN discriminator D it is the probability
that x is *real*. Both conventions are spelled out in the function names.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def kl_standard_normal(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """Per-example KL(N(mu, sigma^2) || N(0, I)) = ½ Σ (sigma² + mu² − 1 − log sigma²)  # AVAE eq. 7"""
    return 0.5 * (torch.exp(2 * log_sigma) + mu.pow(2) - 1 - 2 * log_sigma).sum(dim=1)


def reparameterize(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps, eps ~ N(0, I) (one sample)."""
    return mu + torch.exp(log_sigma) * torch.randn_like(mu)


def sum_squares_recon(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-example ½‖x̂ − x‖² (Gaussian decoder with unit variance)  # AVAE eq. 9"""
    return 0.5 * (x_hat - x).pow(2).flatten(1).sum(dim=1)


def log_mse_recon(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-example (N/2)·log(MSE over the batch): the unit-variance decoder with its noise
    variance fitted in closed form, N = data dimension  # LSR-GAN App. A"""
    n = x[0].numel()
    mse = (x_hat - x).pow(2).mean()
    return (0.5 * n * torch.log(mse + 1e-12)).expand(x.shape[0])


def latent_recon_a(mu_fake: torch.Tensor, z: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """Per-example L_Z^a = ½‖(mu_E(G(z)) − z) / sigma_E‖²  # AVAE eq. 12"""
    return 0.5 * ((mu_fake - z) / torch.exp(log_sigma)).pow(2).sum(dim=1)


def latent_recon_b(mu_fake: torch.Tensor, z: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """Per-example L_Z^b = ½‖(mu_E(G(z)) − √(1 − sigma_E²)·z) / sigma_E‖²  # AVAE eq. 16"""
    sigma2 = torch.exp(2 * log_sigma)
    shrink = torch.sqrt(torch.clamp(1 - sigma2, min=0.0))
    return 0.5 * ((mu_fake - shrink * z) / torch.exp(log_sigma)).pow(2).sum(dim=1)


def avae_critic_loss(logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    """L_C = −E_real log(1 − C(x)) − E_fake log C(x), C = P(generated)  # AVAE eq. 13"""
    return F.softplus(logit_real).mean() + F.softplus(-logit_fake).mean()


def avae_manifold_loss(logit_fake: torch.Tensor) -> torch.Tensor:
    """L_M = logit C(G(z, ξ)) ≈ log(p_G(x) / p(x))  # AVAE eq. 15"""
    return logit_fake.mean()


def gan_discriminator_loss(logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    """−E log D(x) − E log(1 − D(G(z))), D = P(real)  # AVAE eq. 3 (DCGAN)"""
    return F.softplus(-logit_real).mean() + F.softplus(logit_fake).mean()


def gan_generator_loss(logit_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss −E log D(G(z)), D = P(real)  (Goodfellow et al. 2014)"""
    return F.softplus(-logit_fake).mean()


def gaussian_nll(z: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """Per-example −log N(z; mu, diag sigma²)  # AVAE eq. 11"""
    return (0.5 * ((z - mu) / torch.exp(log_sigma)).pow(2) + log_sigma + 0.5 * math.log(2 * math.pi)).sum(dim=1)
