"""Sharpness of images in [0,1]: variance of the Laplacian (AVAE-S §III) and the
luminance-normalised Laplacian (LSR-GAN §2.2, after San Pedro & Siersdorfer 2009 §3.1.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])  # AVAE-S §III
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 grayscale
MIN_LUMINANCE = 1.0 / 255  # floor of the local mean luminance: one grey level


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
    """Luminance-normalised Laplacian: mean over pixels of |L(x,y)| / μ_xy, μ_xy the mean luminance
    of the 3x3 neighbourhood (San Pedro & Siersdorfer 2009 §3.1.2 sum L/μ, taken in absolute value
    and averaged over pixels so that it does not cancel out or scale with image size), mean over images."""
    gray = grayscale(images01)
    lap = laplacian(gray)
    local_mean = F.avg_pool2d(gray, 3, stride=1).clamp(min=MIN_LUMINANCE)
    return float((lap.abs() / local_mean).flatten(1).mean(1).mean())
