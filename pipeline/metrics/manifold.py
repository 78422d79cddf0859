"""Precision and recall (Kynkäänniemi et al. 2019) and density and coverage (Naeem et al. 2020)
of generated samples against real data in a feature space. They separate fidelity (precision,
density: samples inside the real data's k-NN balls) from diversity (recall, coverage: real data
inside the samples' balls / real balls holding a sample), which FID mixes.

Precision/recall follow Kynkäänniemi et al.'s code (kynkaat/improved-precision-and-recall-metric):
k = 3, a point is in a manifold when its distance to some reference point is <= that point's
distance to its k-th nearest neighbour (itself excluded). Density/coverage follow Naeem et al.'s
`prdc` package (clovaai/generative-evaluation-prdc): k = 5, strict <. Distances in float64,
computed in blocks of rows so that memory stays O(block · n).
"""

from __future__ import annotations

import numpy as np
import torch

PR_K = 3  # Kynkäänniemi et al. 2019 (their code's nhood_sizes=[3])
DC_K = 5  # Naeem et al. 2020 (prdc README: nearest_k = 5)
PRDC_SAMPLES = 10_000  # real and fake feature vectors each (prdc README's example: 10,000 of each)
BLOCK = 1024  # rows per block of the distance matrix


def kth_neighbour_distances(x: torch.Tensor, ks: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """{k: distance of every row of x to its k-th nearest other row}."""
    out = {k: torch.empty(len(x), dtype=torch.float64) for k in ks}
    for start in range(0, len(x), BLOCK):
        d = torch.cdist(x[start:start + BLOCK], x)
        nearest = d.topk(max(ks) + 1, dim=1, largest=False).values  # column 0: the row itself
        for k in ks:
            out[k][start:start + BLOCK] = nearest[:, k]
    return out


def prdc(real: np.ndarray, fake: np.ndarray, pr_k: int = PR_K, dc_k: int = DC_K) -> dict[str, float]:
    """{precision, recall, density, coverage} of fake features Y (M x d) against real ones X (N x d),
    NND_k(p) the distance from p to its k-th nearest neighbour in its own set:
    precision = 1/M Σ_j 1[∃i: ‖Y_j − X_i‖ <= NND_pr_k(X_i)]  (Kynkäänniemi et al. 2019)
    recall = 1/N Σ_i 1[∃j: ‖X_i − Y_j‖ <= NND_pr_k(Y_j)]
    density = 1/(dc_k M) Σ_j Σ_i 1[‖Y_j − X_i‖ < NND_dc_k(X_i)]  (Naeem et al. 2020, prdc)
    coverage = 1/N Σ_i 1[min_j ‖X_i − Y_j‖ < NND_dc_k(X_i)]  (Naeem et al. 2020, prdc)."""
    x = torch.from_numpy(np.asarray(real, dtype=np.float64))
    y = torch.from_numpy(np.asarray(fake, dtype=np.float64))
    if min(len(x), len(y)) <= max(pr_k, dc_k):
        raise ValueError(f"precision/recall/density/coverage need more than {max(pr_k, dc_k)} real and fake "
                         f"feature vectors, got {len(x)} and {len(y)}")
    real_radii = kth_neighbour_distances(x, (pr_k, dc_k))
    fake_radii = kth_neighbour_distances(y, (pr_k,))[pr_k]
    in_real_manifold = torch.zeros(len(y), dtype=torch.bool)
    in_real_balls = torch.zeros(len(y), dtype=torch.float64)
    recalled = covered = 0
    for start in range(0, len(x), BLOCK):
        d = torch.cdist(x[start:start + BLOCK], y)  # real rows x fake columns
        r_pr, r_dc = (real_radii[k][start:start + BLOCK, None] for k in (pr_k, dc_k))
        in_real_manifold |= (d <= r_pr).any(dim=0)
        in_real_balls += (d < r_dc).sum(dim=0)
        recalled += int((d <= fake_radii[None]).any(dim=1).sum())
        covered += int((d.min(dim=1).values < r_dc[:, 0]).sum())
    return {"precision": float(in_real_manifold.double().mean()), "recall": recalled / len(x),
            "density": float(in_real_balls.mean()) / dc_k, "coverage": covered / len(x)}
