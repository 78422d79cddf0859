"""Reconstruction metrics on the test split: mse (AVAE T1), kl (AVAE §5), cosine (AVAE-S T3),
recon_variance and recon_accuracy (LSR-GAN App. C, Tables 1-2)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from pipeline import losses


def mse(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Per-pixel mean squared error (AVAE T1)."""
    return float((x - x_hat).double().pow(2).mean())


def mean_kl(mu: torch.Tensor, log_sigma: torch.Tensor) -> float:
    """Mean over examples of KL(q(z|x) ‖ p(z))  # AVAE eq. 7"""
    return float(losses.kl_standard_normal(mu.detach().double(), log_sigma.detach().double()).mean())


def cosine(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Mean over examples of the cosine similarity between an image and its reconstruction (AVAE-S T3)."""
    a, b = x.flatten(1).double(), x_hat.flatten(1).double()
    return float(torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-12).mean())


def recon_variance(decode01: Callable[[torch.Tensor], torch.Tensor], mu: torch.Tensor, log_sigma: torch.Tensor,
                   draws: int) -> float:
    """Variance among `draws` images decoded from z ~ q(z|x) of the same x (LSR-GAN T1 "Variance"):
    per-pixel sample variance over the draws, averaged over pixels and examples."""
    if draws < 2:
        raise ValueError(f"recon_variance needs >= 2 draws per example, got {draws}")
    sigma = log_sigma.exp().expand_as(mu)
    images = torch.stack([decode01(mu + sigma * torch.randn_like(mu)) for _ in range(draws)])
    return float(images.double().var(dim=0, unbiased=True).mean())


def recon_accuracy(predict: Callable[[np.ndarray], np.ndarray], originals_u8: np.ndarray,
                   reconstructions_u8: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(absolute, relative) accuracy of a dataset classifier on reconstructions (LSR-GAN T1):
    absolute against the true labels, relative against the labels it predicts on the originals."""
    on_recon = predict(reconstructions_u8)
    on_orig = predict(originals_u8)
    return float((on_recon == np.asarray(labels)).mean()), float((on_recon == on_orig).mean())
