"""Fréchet and kernel distances: pure maths (clean-fid's own code), feature extraction with
clean-fid's resizer (the features of its `get_model_features`) in true fp32, and a cache of
real-data statistics and features keyed by a hash of dataset + extractor (as clean-fid and
stylegan2-ada do)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from cleanfid import fid as cleanfid
from cleanfid.resize import build_resizer
from tqdm import tqdm

from pipeline.io import atomic_savez

ImageSource = Callable[[int], torch.Tensor]  # n -> n images in [0, 255], N x C x H x W
Stats = tuple[np.ndarray, np.ndarray]  # (mean, covariance)


def feature_stats(features: np.ndarray) -> Stats:
    """Mean and covariance (rows = examples), as clean-fid computes them."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(stats_a: Stats, stats_b: Stats) -> float:
    """‖mu_a − mu_b‖² + Tr(S_a + S_b − 2 (S_a S_b)^½) via clean-fid (Heusel et al. 2017)."""
    return float(cleanfid.frechet_distance(stats_a[0], stats_a[1], stats_b[0], stats_b[1]))


def kernel_distance(real: np.ndarray, fake: np.ndarray, seed: int = 0) -> float:
    """clean-fid's KID (Bińkowski et al. 2018), unbiased: squared MMD with the kernel (x·y / d + 1)³,
    averaged over 100 random subsets of min(n_real, n_fake, 1000) of each set. clean-fid's own
    `kernel_distance(real, fake)`, its draws from NumPy's global RNG seeded with `seed` (the
    global state is restored after)."""
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        return float(cleanfid.kernel_distance(real, fake))
    finally:
        np.random.set_state(state)


@contextlib.contextmanager
def fp32_matmul():
    """TF32 off inside (PyTorch's default leaves it on for cuDNN convolutions): matmuls and
    convolutions of feature extractors in true fp32 on GPUs, as the published statistics were made."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def extract_features(source: ImageSource, extractor: Callable[[torch.Tensor], torch.Tensor], n: int,
                     batch_size: int, resize: str | None = None, desc: str = "features",
                     device: torch.device = torch.device("cpu")) -> np.ndarray:
    """Features of the first n images of `source`, batch by batch: the images (optionally
    resized by clean-fid's resizer for `resize`, e.g. 'clean': PIL bicubic, float, to
    Inception's 299x299) go through `extractor` on `device` (it must live there), TF32 off. The same
    features as clean-fid's `get_model_features` (a test checks it bit for bit), without its
    two copies of every resized batch and with a last, partial batch of exactly the images left."""
    resize_batch = batch_resizer(resize) if resize is not None else None
    feats = []
    with torch.no_grad(), fp32_matmul(), tqdm(total=n, desc=desc, unit="img", mininterval=2.0, leave=False) as bar:
        for start in range(0, n, batch_size):
            images = source(min(batch_size, n - start)).float()
            if resize_batch is not None:
                images = resize_batch(images)
            feats.append(extractor(images.to(device)).cpu().numpy())
            bar.update(len(images))
    return np.concatenate(feats)


def batch_resizer(mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A batch (N x C x H x W, [0, 255]) -> each image through clean-fid's resizer for `mode`,
    exactly as clean-fid resizes it (PIL, on the CPU, one image at a time)."""
    resize_one = build_resizer(mode)

    def resize_batch(images: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.from_numpy(resize_one(image.numpy().transpose((1, 2, 0)))).permute(2, 0, 1)
                            for image in images.cpu()])

    return resize_batch


def array_source(images_u8: np.ndarray) -> ImageSource:
    """An ImageSource cycling through a uint8 image array, in order (real data or stored samples)."""
    state = {"i": 0}

    def source(n: int) -> torch.Tensor:
        idx = (state["i"] + np.arange(n)) % len(images_u8)
        state["i"] = (state["i"] + n) % len(images_u8)
        return torch.from_numpy(np.asarray(images_u8[np.sort(idx)])).float()

    return source


def to_255_rgb(images01: torch.Tensor) -> torch.Tensor:
    """[0,1] images -> [0,255] with 3 channels (grayscale repeated), for Inception/AlexNet."""
    x = images01 * 255.0
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


def rgb_source(source: ImageSource) -> ImageSource:
    """The same images with grayscale repeated to 3 channels (Inception's input)."""
    return lambda n: (lambda x: x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x)(source(n))


def cached_arrays(cache_dir: str | Path | None, key: str,
                  compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Named arrays from `cache_dir/<key>.npz`, computed and stored (atomically) on a miss.

    `key` must hash everything the arrays depend on (dataset checksums, extractor weights, layer,
    resize mode, sample count); cache_dir None disables the cache.
    """
    path = Path(cache_dir) / f"{key}.npz" if cache_dir else None
    if path is not None and path.exists():
        blob = np.load(path)
        return {name: blob[name] for name in blob.files}
    arrays = compute()
    if path is not None:
        atomic_savez(path, **arrays)
    return arrays

