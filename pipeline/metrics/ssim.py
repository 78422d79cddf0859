"""MS-SSIM (Wang, Simoncelli & Bovik 2003) as Odena et al.'s `msssim.py` computes it
(tensorflow/models research/compression/image_encoder/msssim.py, the implementation behind the
1 − MS-SSIM sample diversity of α-GAN §4), and that diversity.

What msssim.py does, and so this module: images in float64; at each of five scales an 11x11
'fspecial' Gaussian window with σ = 1.5, 'valid' filtering; where a scale is smaller than 11
pixels the window shrinks to its side and σ shrinks with it (σ = 1.5 · size / 11); K1 = 0.01,
K2 = 0.03; each scale's SSIM and contrast-structure (cs) are means over every pixel and channel;
between scales a 2x2 box filter (scipy's 'reflect' beyond the last row/column) keeps every
second pixel, so 32 px images give scales 32, 16, 8, 4, 2; the result is
Π_{j<5} cs_j^{w_j} · ssim_5^{w_5}. Called per pair (a batch of one), as α-GAN averages it over
pairs. Where msssim.py would raise a negative mean to a fractional power (NaN), the term is 0.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003 (msssim.py's defaults)
FILTER_SIZE, FILTER_SIGMA = 11, 1.5  # msssim.py defaults (Wang et al. 2004)
K1, K2 = 0.01, 0.03  # SSIM constants (Wang et al. 2004), data range 1


def gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian on a grid centred as MATLAB's fspecial (half-integer offsets for
    even sizes); the 2-D window is its outer product."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
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


def ssim_terms(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean (ssim, cs) of [0,1] float64 images N x C x H x W at one scale (msssim.py's
    _SSIMForMultiScale): window and σ shrunk together to the image's smaller side."""
    c, height, width = a.shape[1:]
    size = min(FILTER_SIZE, height, width)
    g = gaussian_window(size, size * FILTER_SIGMA / FILTER_SIZE)
    maps = torch.cat([a, b, a * a, b * b, a * b], dim=1)  # the five moments filtered in one pass
    maps = filter_matrix(g, height) @ maps @ filter_matrix(g, width).T  # separable, 'valid'
    mu_a, mu_b, aa, bb, ab = maps.split(c, dim=1)
    var_a, var_b, cov = aa - mu_a ** 2, bb - mu_b ** 2, ab - mu_a * mu_b
    c1, c2 = K1 ** 2, K2 ** 2
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    lum = (2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1)
    return (lum * cs).flatten(1).mean(1), cs.flatten(1).mean(1)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """msssim.py's scale step: scipy.ndimage.convolve with a 2x2 box ('reflect': an odd last row or
    column is averaged with itself), then every second pixel from the first."""
    pad_h, pad_w = x.shape[-2] % 2, x.shape[-1] % 2
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return F.avg_pool2d(x, 2)


def ms_ssim(a: torch.Tensor, b: torch.Tensor, weights=MS_SSIM_WEIGHTS) -> torch.Tensor:
    """Per-pair MS-SSIM of [0,1] images N x C x H x W: Π_j cs_j^{w_j} · ssim_M^{w_M} (Wang et al. 2003 eq. 7)."""
    a, b = a.double(), b.double()
    out = torch.ones(len(a), dtype=torch.float64)
    for j, weight in enumerate(weights):
        ssim, cs = ssim_terms(a, b)
        out = out * (ssim if j == len(weights) - 1 else cs).clamp(min=0) ** weight
        a, b = downsample(a), downsample(b)
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
