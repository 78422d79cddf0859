"""SSIM (Wang et al. 2004) and MS-SSIM (Wang, Simoncelli & Bovik 2003), in one place: the
Gaussian window, the constants and the scale step are shared.

`ms_ssim` is MS-SSIM as Odena et al.'s `msssim.py` computes it (tensorflow/models
research/compression/image_encoder/msssim.py, the implementation behind the 1 − MS-SSIM sample
diversity of α-GAN §4): images in float64; at each of five scales an 11x11 'fspecial' Gaussian
window with σ = 1.5, 'valid' filtering; where a scale is smaller than 11 pixels the window shrinks
to its side and σ shrinks with it (σ = 1.5 · size / 11); K1 = 0.01, K2 = 0.03; each scale's SSIM
and contrast-structure (cs) are means over every pixel and channel; between scales a 2x2 box
filter (scipy's 'reflect' beyond the last row/column) keeps every second pixel, so 32 px images give
scales 32, 16, 8, 4, 2; the result is Π_{j<5} cs_j^{w_j} · ssim_5^{w_5}. Called per pair (a batch
of one), as α-GAN averages it over pairs. Where msssim.py would raise a negative mean to a
fractional power (NaN), the term is 0.

`ssim` is the single-scale SSIM of 004's training loss (004 eq. 8): differentiable float32 batches,
the window shrunk to the image with σ kept at 1.5, moments taken on mean-centred images so that
float32 keeps the variances. The two keep their own arithmetic: the metric is checked against
msssim.py's values to 1e-10 and the loss trains VAE-S, so neither may change by a bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003 (msssim.py's defaults)
FILTER_SIZE, FILTER_SIGMA = 11, 1.5  # msssim.py defaults (Wang et al. 2004)
K1, K2 = 0.01, 0.03  # SSIM constants (Wang et al. 2004), data range 1


def gaussian_window(size: int, sigma: float = FILTER_SIGMA) -> torch.Tensor:
    """Normalised 1-D Gaussian on a grid centred as MATLAB's fspecial (half-integer offsets for
    even sizes); the 2-D window is its outer product."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    return g / g.sum()


# ---------------------------------------------------------------- MS-SSIM (msssim.py, the diversity metric)


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


# ---------------------------------------------------------------- single-scale SSIM (004's loss)


def _gaussian_blur_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filtering of every channel (rows, then columns)."""
    c, n = x.shape[1], g.numel()
    h = F.conv2d(x, g.to(x).view(1, 1, 1, n).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(h, g.to(x).view(1, 1, n, 1).repeat(c, 1, 1, 1), groups=c)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window: int = FILTER_SIZE) -> torch.Tensor:
    """Per-example mean SSIM = l·c·s with α = β = γ = 1 over Gaussian windows ('valid'),
    C1 = (K1 L)², C2 = (K2 L)²  # 004 eq. 8 (Wang et al. 2004 eq. 13)"""
    g = gaussian_window(min(window, x.shape[-1], x.shape[-2])).float()
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    # (co)variances are shift-invariant: take them on images centred by their own mean, which
    # keeps E[x²] − E[x]² from cancelling catastrophically in float32
    xc, yc = x - x.mean(dim=(2, 3), keepdim=True), y - y.mean(dim=(2, 3), keepdim=True)
    c = x.shape[1]
    stats = _gaussian_blur_valid(torch.cat([x, y, xc, yc, xc * xc, yc * yc, xc * yc], dim=1), g)
    mu_x, mu_y, mxc, myc, exx, eyy, exy = stats.split(c, dim=1)
    var_x, var_y, cov = exx - mxc.pow(2), eyy - myc.pow(2), exy - mxc * myc
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.pow(2) + mu_y.pow(2) + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(dim=1)
