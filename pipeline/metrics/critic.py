"""The independent Wasserstein critic of α-GAN §4 (after Danihelka et al. 2017): a WGAN-GP
critic trained, for evaluation only, to tell held-out data from samples; the metric is the
negative Wasserstein distance it estimates on a second held-out set and fresh samples
(higher is better)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

GP_WEIGHT = 10.0  # WGAN-GP (Gulrajani et al. 2017) λ = 10
ADAM_BETAS = (0.5, 0.9)  # WGAN-GP / α-GAN App. H


@dataclass
class CriticSettings:
    """steps: critic updates; batch_size; lr: Adam learning rate; width: channels of the first conv."""

    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-4
    width: int = 32


def build_independent_critic(shape: tuple[int, ...], width: int) -> nn.Module:
    """Conv critic without normalisation (the gradient penalty is per example), or an MLP for vectors."""
    if len(shape) == 1:
        return nn.Sequential(nn.Linear(shape[0], 4 * width), nn.LeakyReLU(0.2), nn.Linear(4 * width, 4 * width),
                             nn.LeakyReLU(0.2), nn.Linear(4 * width, 1))
    c, h, w = shape
    layers, ch = [], c
    for k in range(3):
        layers += [nn.Conv2d(ch, width << k, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        ch = width << k
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(ch * (h // 8) * (w // 8), 1))


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[(‖∇C(x̂)‖ − 1)²] at random interpolates x̂ (WGAN-GP eq. 3)."""
    t = torch.rand(len(real), *([1] * (real.dim() - 1)), dtype=real.dtype)
    mixed = (t * real + (1 - t) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def wasserstein_estimate(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, batch: int = 1000) -> float:
    """E_real C − E_fake C."""
    with torch.no_grad():
        mean = lambda x: torch.cat([critic(x[i:i + batch]) for i in range(0, len(x), batch)]).mean()  # noqa: E731
        return float(mean(real) - mean(fake))


def independent_critic(real_train: torch.Tensor, fake_train: torch.Tensor, real_eval: torch.Tensor,
                       fake_eval: torch.Tensor, settings: CriticSettings, seed: int = 0) -> float:
    """Train a fresh WGAN-GP critic on (real_train, fake_train); return −W on (real_eval, fake_eval)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        critic = build_independent_critic(tuple(real_train.shape[1:]), settings.width)
        opt = torch.optim.Adam(critic.parameters(), lr=settings.lr, betas=ADAM_BETAS)
        for _ in range(settings.steps):
            real = real_train[torch.randint(len(real_train), (settings.batch_size,), generator=gen)]
            fake = fake_train[torch.randint(len(fake_train), (settings.batch_size,), generator=gen)]
            loss = critic(fake).mean() - critic(real).mean() + GP_WEIGHT * gradient_penalty(critic, real, fake)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return -wasserstein_estimate(critic.eval(), real_eval, fake_eval)
