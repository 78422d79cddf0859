"""Metric maths and feature extraction (no sample generation, no file writing).

Fréchet distances use clean-fid's own `frechet_distance`; features are extracted with
clean-fid's `get_model_features`, with its custom feature-extractor hook for the dataset
classifier (fd_classifier) and its standard Inception for fid.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from cleanfid import fid as cleanfid

from pipeline import losses

ImageSource = Callable[[int], torch.Tensor]  # n -> n images in [0, 255], N x C x H x W


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rows = examples), as clean-fid computes them."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(stats_a: tuple[np.ndarray, np.ndarray], stats_b: tuple[np.ndarray, np.ndarray]) -> float:
    """‖mu_a − mu_b‖² + Tr(S_a + S_b − 2 (S_a S_b)^½) via clean-fid (Heusel et al. 2017)."""
    return float(cleanfid.frechet_distance(stats_a[0], stats_a[1], stats_b[0], stats_b[1]))


def extract_features(source: ImageSource, extractor: Callable[[torch.Tensor], torch.Tensor], n: int,
                     batch_size: int, resize: str | None = None, desc: str = "features") -> np.ndarray:
    """Features of n images from `source` through clean-fid's `get_model_features`.

    resize=None keeps the images as they are (custom extractor hook); resize='clean' applies
    clean-fid's standard resizing to Inception's 299x299.
    """
    batch_size = min(batch_size, n)

    def generator(z: torch.Tensor) -> torch.Tensor:  # clean-fid calls G(z) for each batch
        return source(len(z)).float()

    identity = (lambda img: img) if resize is None else None
    with torch.no_grad():
        return cleanfid.get_model_features(generator, extractor, mode=resize or "clean", z_dim=1, num_gen=n,
                                           batch_size=batch_size, device=torch.device("cpu"),
                                           desc=f"{desc}: ", verbose=False, custom_fn_resize=identity)


def array_source(images_u8: np.ndarray) -> ImageSource:
    """An ImageSource cycling through a uint8 image array (real data)."""
    state = {"i": 0}

    def source(n: int) -> torch.Tensor:
        idx = (state["i"] + np.arange(n)) % len(images_u8)
        state["i"] = (state["i"] + n) % len(images_u8)
        return torch.from_numpy(np.asarray(images_u8[np.sort(idx)])).float()

    return source


def mse(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Per-pixel mean squared error (AVAE T1)."""
    return float((x - x_hat).double().pow(2).mean())


def mean_kl(mu: torch.Tensor, log_sigma: torch.Tensor) -> float:
    """Mean over examples of KL(q(z|x) ‖ p(z))  # AVAE eq. 7"""
    return float(losses.kl_standard_normal(mu.double(), log_sigma.double()).mean())


def to_255_rgb(images01: torch.Tensor) -> torch.Tensor:
    """[0,1] images -> [0,255] with 3 channels (grayscale repeated), for Inception/AlexNet."""
    x = images01 * 255.0
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


def load_inception(weights_path) -> Callable[[torch.Tensor], torch.Tensor]:
    """clean-fid's InceptionV3W from an explicit weights file (never downloads)."""
    from cleanfid.inception_torchscript import InceptionV3W

    from pipeline.weights import INCEPTION_FILE

    if weights_path.name != INCEPTION_FILE:
        raise ValueError(f"{weights_path}: clean-fid loads Inception from a file named {INCEPTION_FILE}")
    model = InceptionV3W(str(weights_path.parent), download=False).eval()
    return lambda x: model(x)


def load_lpips(weights_path) -> torch.nn.Module:
    """LPIPS v0.1 (AlexNet) with the backbone loaded from an explicit torchvision file."""
    import lpips
    import torchvision

    model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    alexnet = torchvision.models.alexnet()
    alexnet.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    for slice_ in (getattr(model.net, f"slice{k}") for k in range(1, 6)):
        for name, layer in slice_.named_children():
            layer.load_state_dict(alexnet.features[int(name)].state_dict())
    return model.eval()


def lpips_distance(model: torch.nn.Module, x01: torch.Tensor, y01: torch.Tensor, batch_size: int) -> float:
    """Mean LPIPS between image pairs given in [0,1] (lpips expects [-1,1], 3 channels)."""
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(x01), batch_size):
            a, b = (to_255_rgb(t[i:i + batch_size]) / 127.5 - 1 for t in (x01, y01))
            total += float(model(a, b).sum())
    return total / len(x01)
