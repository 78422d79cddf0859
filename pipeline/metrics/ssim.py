"""MS-SSIM (Wang, Simoncelli & Bovik 2003) and the sample diversity of α-GAN §4: 1 − mean
pairwise MS-SSIM.

Small images: the 11x11 Gaussian window (σ = 1.5) is shrunk to the image side at scales
smaller than the window (as TensorFlow's ssim does), so 32x32 images keep all five scales
(32, 16, 8, 4, 2); negative contrast-structure terms are clipped at 0 before the power
(as pytorch-msssim does) so that the product stays real.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003
K1, K2 = 0.01, 0.03  # SSIM constants (Wang et al. 2004), data range 1


def gaussian_window(size: int, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 1-D Gaussian (the 2-D window is its outer product; filtering is separable)."""
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def filter_matrix(g: torch.Tensor, n: int) -> torch.Tensor:
    """(n − len(g) + 1) x n matrix whose product with a signal is its 'valid' correlation with g
    (as a matrix product: far faster on CPU than single-channel convolutions)."""
    k = len(g)
    m = torch.zeros(n - k + 1, n, dtype=g.dtype)
    for i in range(n - k + 1):
        m[i, i:i + k] = g
    return m


def ssim_terms(a: torch.Tensor, b: torch.Tensor, win: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (ssim, contrast-structure) of [0,1] images N x C x H x W, 'valid' Gaussian filtering."""
    c = a.shape[1]
    size = min(win, a.shape[-2], a.shape[-1])
    g = gaussian_window(size).to(a)
    maps = torch.cat([a, b, a * a, b * b, a * b], dim=1)  # the five moments filtered in one pass
    maps = filter_matrix(g, maps.shape[-2]) @ maps @ filter_matrix(g, maps.shape[-1]).T  # separable, 'valid'
    mu_a, mu_b, aa, bb, ab = maps.split(c, dim=1)
    var_a, var_b, cov = aa - mu_a ** 2, bb - mu_b ** 2, ab - mu_a * mu_b
    c1, c2 = K1 ** 2, K2 ** 2
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    lum = (2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1)
    return (lum * cs).flatten(1).mean(1), cs.flatten(1).mean(1)


def ms_ssim(a: torch.Tensor, b: torch.Tensor, weights=MS_SSIM_WEIGHTS) -> torch.Tensor:
    """Per-pair MS-SSIM of [0,1] images: Π_j cs_j^{w_j} · ssim_M^{w_M} (Wang et al. 2003 eq. 7)."""
    a, b = a.float(), b.float()
    levels = len(weights)
    out = torch.ones(len(a), dtype=torch.float64)
    for j, weight in enumerate(weights):
        ssim, cs = ssim_terms(a, b)
        term = ssim if j == levels - 1 else cs
        out = out * term.double().clamp(min=0) ** weight
        if j < levels - 1:
            if min(a.shape[-2:]) < 2:
                raise ValueError(f"images too small for {levels}-scale MS-SSIM")
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return out


def diversity(images01: torch.Tensor, n_pairs: int, seed: int = 0, batch: int = 500) -> float:
    """1 − mean MS-SSIM over `n_pairs` random pairs of distinct images (α-GAN §4)."""
    n = len(images01)
    if n < 2:
        raise ValueError("diversity needs at least two images")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, n_pairs)
    j = (i + rng.integers(1, n, n_pairs)) % n  # j != i
    scores = [ms_ssim(images01[i[k:k + batch]], images01[j[k:k + batch]]) for k in range(0, n_pairs, batch)]
    return float(1.0 - torch.cat(scores).mean())
