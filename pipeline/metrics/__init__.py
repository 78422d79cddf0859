"""Metric maths and feature extraction (no sample generation, no file writing).

One module per family: `frechet` (Fréchet distances through clean-fid, feature extraction,
the real-statistics cache), `inception` (clean-fid's Inception: four feature sizes and the
Inception score), `perceptual` (LPIPS), `reconstruction` (mse, kl, cosine, recon_variance,
recon_accuracy), `diversity` (1 − MS-SSIM, with `pipeline.ssim`), `sharpness` (Laplacian variance, normalised
Laplacian), `critic` (the independent Wasserstein critic), `manifold` (precision, recall, density,
coverage). Every function takes its network explicitly, so tests can run each code path with a
randomly initialised network; only `pipeline.evaluate` decides which real weights are used,
and records them.
"""

from pipeline.metrics.critic import CriticSettings, independent_critic
from pipeline.metrics.frechet import (ImageSource, Stats, array_source, batch_resizer, cached_arrays,
                                      extract_features, feature_stats, fp32_matmul, frechet_distance,
                                      kernel_distance, rgb_source, to_255_rgb)
from pipeline.metrics.inception import (TAPS, InceptionFeatures, imagenet_probs, inception_score, load_inception,
                                        split_taps)
from pipeline.metrics.perceptual import load_lpips, lpips_distance, lpips_with_backbone
from pipeline.metrics.manifold import DC_K, PR_K, PRDC_SAMPLES, prdc
from pipeline.metrics.reconstruction import cosine, mean_kl, mse, recon_accuracy, recon_variance
from pipeline.metrics.sharpness import laplace_variance, norm_laplace
from pipeline.ssim import ms_ssim
from pipeline.metrics.diversity import diversity

__all__ = [
    "CriticSettings", "DC_K", "ImageSource", "InceptionFeatures", "PRDC_SAMPLES", "PR_K", "Stats", "TAPS",
    "array_source", "batch_resizer", "cached_arrays", "cosine", "diversity", "extract_features", "feature_stats",
    "fp32_matmul", "frechet_distance", "imagenet_probs", "independent_critic", "inception_score", "kernel_distance",
    "laplace_variance", "load_inception", "load_lpips", "lpips_distance", "lpips_with_backbone", "mean_kl",
    "ms_ssim", "mse", "norm_laplace", "prdc", "recon_accuracy", "recon_variance", "rgb_source", "split_taps",
    "to_255_rgb",
]
