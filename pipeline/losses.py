"""Loss terms shared by methods. Per-example terms sum over dimensions; callers average.

Conventions: critic outputs are logits. For AVAE's critic C (AVAE eq. 13) the sigmoid is the
probability that x is *generated*; for a standard GAN discriminator D it is the probability
that x is *real*. Both conventions are spelled out in the function names.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pipeline.ssim import ssim


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


# ---------------------------------------------------------------- the adversarial baselines (SPEC §3.4-3.8)


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Per-example (‖∇_x̃ C(x̃)‖₂ − 1)², x̃ = ε·x + (1 − ε)·x̃_fake, ε ~ U[0, 1] per example
    (Gulrajani et al. 2017, Algorithm 1); the graph is kept so the penalty trains the critic."""
    eps = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device, dtype=real.dtype)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2)


def wasserstein_critic_loss(critic_real: torch.Tensor, critic_fake: torch.Tensor) -> torch.Tensor:
    """E C(G(z)) − E C(x): the negated Wasserstein estimate the critic minimises (WGAN-GP eq. 3)."""
    return critic_fake.mean() - critic_real.mean()


def wasserstein_generator_loss(critic_fake: torch.Tensor) -> torch.Tensor:
    """−E C(G(z)) (WGAN-GP Algorithm 1, generator update)."""
    return -critic_fake.mean()


def gan_discriminator_loss_recon_and_samples(logit_real: torch.Tensor, logit_recon: torch.Tensor,
                                             logit_sample: torch.Tensor) -> torch.Tensor:
    """−E log D(x) − E log(1 − D(x̂)) − E log(1 − D(G(z))), D = P(real): reconstructions and
    prior samples are both fake  # α-GAN eq. 15; Larsen et al. 2016 L_GAN"""
    return F.softplus(-logit_real).mean() + F.softplus(logit_recon).mean() + F.softplus(logit_sample).mean()


def synthetic_likelihood_ratio(logit: torch.Tensor) -> torch.Tensor:
    """Per-example R(x) = −log D(x) + log(1 − D(x)), D = sigmoid(logit) = P(real); equals
    −logit  # α-GAN Algorithm 1 lines 3-4 (R_D, R_C)"""
    return -F.logsigmoid(logit) + F.logsigmoid(-logit)


def l1_recon(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-example mean absolute error over dimensions, ‖x − x̂‖₁ / dim  # α-GAN eq. 11/13 (per
    pixel, so that the papers' weights λ ∈ {1, …, 50} and AGE's {100, …, 2000} are on their scale)"""
    return (x_hat - x).abs().flatten(1).mean(dim=1)


def empirical_kl(z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Batch KL(N(m, diag s²) ‖ N(0, I)) from the per-dimension batch mean m_i and std s_i:
    Σ_i (s_i² + m_i²)/2 − log s_i − ½  # α-GAN eq. 18 (AGE's KL). A scalar for the batch."""
    m = z.mean(dim=0)
    var = z.var(dim=0, unbiased=False)
    return (0.5 * (var + m.pow(2)) - 0.5 * torch.log(var + eps) - 0.5).sum()


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-example 1 − cos(a, b)  # AGE code reconstruction (α-GAN App. H.2)"""
    return 1 - F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1, eps=1e-8)


# ---------------------------------------------------------------- VAE-S / AVAE-S (004) and LSR-GAN (003)


def _depthwise(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Each of `kernels` (k x h x w) applied to every channel of x separately, 'valid' padding;
    returns batch x (C·k) x H' x W'."""
    c = x.shape[1]
    weight = kernels.to(x).unsqueeze(1).repeat(c, 1, 1, 1)  # (C·k) x 1 x h x w, channel-major
    return F.conv2d(x, weight, groups=c)


SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_edges(x: torch.Tensor) -> torch.Tensor:
    """E_Sobel(x): horizontal and vertical Sobel responses of every channel ('valid')  # 004 eq. 6"""
    return _depthwise(x, torch.stack([SOBEL_X, SOBEL_X.T]))


def gabor_kernels(n_orientations: int = 4, size: int = 7, sigma: float = 2.0, wavelength: float = 4.0,
                  gamma: float = 0.5) -> torch.Tensor:
    """Real Gabor filters exp(−(x'² + γ²y'²)/2σ²)·cos(2π x'/λ) at θ = kπ/n, made zero-mean so a
    flat image has no texture response; n_orientations x size x size  # 004 eq. 7 (T_Gabor)"""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    bank = []
    for k in range(n_orientations):
        theta = math.pi * k / n_orientations
        xr = xx * math.cos(theta) + yy * math.sin(theta)
        yr = -xx * math.sin(theta) + yy * math.cos(theta)
        g = torch.exp(-(xr.pow(2) + gamma ** 2 * yr.pow(2)) / (2 * sigma ** 2)) * torch.cos(2 * math.pi * xr / wavelength)
        bank.append(g - g.mean())
    return torch.stack(bank).float()


def gabor_textures(x: torch.Tensor) -> torch.Tensor:
    """T_Gabor(x): responses of the 4-orientation Gabor bank on every channel ('valid')  # 004 eq. 7"""
    return _depthwise(x, gabor_kernels())


def sum_squares(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-example ‖a − b‖² summed over every dimension (004's L_MSE, L_Sobel, L_Gabor)."""
    return (a - b).pow(2).flatten(1).sum(dim=1)


def structure_aware_terms(x_hat: torch.Tensor, x: torch.Tensor, pixel_range: float = 255.0) -> dict[str, torch.Tensor]:
    """004 eq. 5's five reconstruction terms per example, of images given in [0, 1]: mae, mse,
    sobel and gabor as means over pixels (and filter responses) on the 0..pixel_range scale
    (004 §III: "average L1 loss of pixels in 0-255 range was 30, ... L2 loss was about 900"),
    dssim = 1 − SSIM (scale-free)  # 004 eqs. 5-8"""
    def mean_squares(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).pow(2).flatten(1).mean(dim=1) * pixel_range ** 2

    return {"mae": (x_hat - x).abs().flatten(1).mean(dim=1) * pixel_range, "mse": mean_squares(x_hat, x),
            "dssim": 1 - ssim(x_hat, x), "sobel": mean_squares(sobel_edges(x_hat), sobel_edges(x)),
            "gabor": mean_squares(gabor_textures(x_hat), gabor_textures(x))}


def gaussian_log_density_matrix(z: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """log N(z_i,k; mu_j,k, sigma_j,k²) for every pair (i, j) and dimension k: B x B x K."""
    zi, mj, sj = z.unsqueeze(1), mu.unsqueeze(0), log_sigma.unsqueeze(0)
    return -0.5 * ((zi - mj) / torch.exp(sj)).pow(2) - sj - 0.5 * math.log(2 * math.pi)


def total_correlation_mws(z: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor,
                          dataset_size: int) -> torch.Tensor:
    """Batch estimate of TC = KL(q(z) ‖ Π_j q(z_j)) by minibatch-weighted sampling:
    log q(z_i) ≈ logsumexp_j log q(z_i|x_j) − log(N·M), likewise per dimension for q(z_ik),
    N = dataset size, M = batch size  # β-TCVAE (Chen et al. 2018) §4.1; 004 eq. 10"""
    log_q = gaussian_log_density_matrix(z, mu, log_sigma)
    log_nm = math.log(dataset_size * z.shape[0])
    log_qz = torch.logsumexp(log_q.sum(dim=2), dim=1) - log_nm
    log_prod_qzk = (torch.logsumexp(log_q, dim=1) - log_nm).sum(dim=1)
    return (log_qz - log_prod_qzk).mean()


def latent_log_density_loss(z: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """−E_z log q(z | G(z)): the mean over the batch of the Gaussian NLL of the generator's input z
    under the frozen encoder's N(mu(G(z)), sigma(G(z)))  # LSR-GAN eq. 4 (λ term)"""
    return gaussian_nll(z, mu, log_sigma).mean()


def discriminator_accuracy(logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    """Fraction of real (logit > 0) and fake (logit < 0) inputs a P(real) discriminator gets right
    (004 Algorithm 1: Accuracy_Dis)."""
    right = torch.cat([(logit_real > 0).flatten(), (logit_fake < 0).flatten()])
    return right.float().mean()
