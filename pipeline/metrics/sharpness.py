"""Sharpness of images in [0,1]: variance of the Laplacian (AVAE-S §III) and the
luminance-normalised Laplacian (LSR-GAN §2.2, after San Pedro & Siersdorfer 2009 §3.1.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])  # AVAE-S §III
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 grayscale


def grayscale(images01: torch.Tensor) -> torch.Tensor:
    """N x C x H x W in [0,1] -> N x 1 x H x W (BT.601 luma for RGB)."""
    if images01.shape[1] == 1:
        return images01.double()
    w = torch.tensor(LUMA, dtype=torch.float64).view(1, 3, 1, 1)
    return (images01.double() * w).sum(dim=1, keepdim=True)


def laplacian(gray: torch.Tensor) -> torch.Tensor:
    return F.conv2d(gray, LAPLACE.to(gray)[None, None])  # 'valid': no border artefacts


def laplace_variance(images01: torch.Tensor) -> float:
    """Mean over images of the variance of the Laplacian of the grayscale image (AVAE-S §III)."""
    lap = laplacian(grayscale(images01)).flatten(1)
    return float(lap.var(dim=1, unbiased=False).mean())


def norm_laplace(images01: torch.Tensor) -> float:
    """Luminance-normalised Laplacian (LSR-GAN §2.2 after San Pedro & Siersdorfer 2009 §3.1.2,
    Sh = Σ_xy L(x,y) / μ_xy with μ_xy the mean luminance around (x,y), here of the 3x3
    neighbourhood; |L| as OpenIMAJ's implementation of that section, `Sharpness`, takes it): per image
    Σ|L| / Σμ over the valid region, i.e. the per-pixel ratio |L|/μ_xy averaged with weights μ_xy,
    so that pixels of near-zero luminance, where the bare ratio is unbounded and an invisible
    grey level changes it most, weigh in proportion to their light; mean over images (an image
    without light scores 0)."""
    gray = grayscale(images01)
    lap = laplacian(gray).abs().flatten(1).sum(1)
    light = F.avg_pool2d(gray, 3, stride=1).flatten(1).sum(1)
    return float(torch.where(light > 0, lap / light.clamp(min=1e-300), 0.0).mean())
