"""The sample diversity of α-GAN §4: 1 − the mean MS-SSIM (`pipeline.ssim.ms_ssim`) of random
pairs of distinct images."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.ssim import ms_ssim


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
