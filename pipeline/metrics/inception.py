"""The ImageNet Inception of clean-fid (stylegan2-ada's TorchScript `inception-2015-12-05.pt`):
features at the four sizes of AVAE-S T3 (images resized by clean-fid) and class probabilities for
the Inception score (images resized by the file itself, as stylegan2-ada computes IS).

What the TorchScript file offers (and what clean-fid's InceptionV3W uses): `base.layers`, a
sequential module of named children conv, conv_1, conv_2, pool0, conv_3, conv_4, pool1,
mixed, mixed_1 … mixed_10, pool2 that maps 299x299 images normalised as (x − 128)/128 to
N x 2048 x 1 x 1; `base.output`, the Linear(2048, 1008) ImageNet classifier; and
`base(img, return_features, use_fp16, no_output_bias)`, stylegan2-ada's forward from [0,255]
images of any size. The four feature sizes of 004 T3 are read where pytorch-fid reads them (spatially averaged):
64 = first max pooling (pool0), 192 = second max pooling (pool1), 768 = pre-aux classifier
(mixed_7 = Mixed_6e), 2048 = final average pooling (pool2, clean-fid's FID features).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

TAPS = {64: "pool0", 192: "pool1", 768: "mixed_7", 2048: "pool2"}  # feature size -> layer name
INCEPTION_NAME = "inception-2015-12-05"


class InceptionFeatures(torch.nn.Module):
    """clean-fid extractor: [0,255] RGB 299x299 -> concatenated features [64 | 192 | 768 | 2048].

    `base` is the TorchScript module (or any module with the same `layers`/`output` interface).
    """

    def __init__(self, base: torch.nn.Module):
        super().__init__()
        self.base = base
        names = [name for name, _ in base.layers.named_children()]
        absent = [layer for layer in TAPS.values() if layer not in names]
        if absent:
            raise ValueError(f"Inception module lacks layers {absent} (has {names}); "
                             f"expected clean-fid's {INCEPTION_NAME}.pt")

    def forward(self, x255: torch.Tensor) -> torch.Tensor:
        x = (x255 - 128.0) / 128.0  # clean-fid InceptionV3W normalisation
        taps, wanted = [], set(TAPS.values())
        for name, layer in self.base.layers.named_children():
            x = layer(x)
            if name in wanted:
                taps.append(x.mean(dim=(2, 3)))  # spatial average, as pytorch-fid
        return torch.cat(taps, dim=1)


def split_taps(features: np.ndarray) -> dict[int, np.ndarray]:
    """Concatenated InceptionFeatures output -> {feature size: features}."""
    out, start = {}, 0
    for size in TAPS:
        out[size] = features[:, start:start + size]
        start += size
    if start != features.shape[1]:
        raise ValueError(f"expected {start} concatenated Inception features, got {features.shape[1]}")
    return out


def load_inception(weights_path: str | Path) -> InceptionFeatures:
    """clean-fid's InceptionV3W from an explicit weights file (never downloads)."""
    from cleanfid.inception_torchscript import InceptionV3W

    weights_path = Path(weights_path)
    if weights_path.name != f"{INCEPTION_NAME}.pt":
        raise ValueError(f"{weights_path}: clean-fid loads Inception from a file named {INCEPTION_NAME}.pt")
    return InceptionFeatures(InceptionV3W(str(weights_path.parent), download=False).base).eval()


def imagenet_probs(model: InceptionFeatures, images255: torch.Tensor) -> torch.Tensor:
    """Class probabilities for the Inception score as stylegan2-ada's `is50k` gets them: the
    TorchScript file's own forward on [0,255] RGB images at their native size (it resizes them to
    299x299 bilinearly inside, emulating tf.image.resize_bilinear), softmax over the 1008 outputs
    without the output bias ('to match the original implementation')."""
    return model.base(images255, no_output_bias=True)


def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) ‖ p(y))) (Salimans et al. 2016), mean and std over `splits` chunks."""
    probs = np.asarray(probs, dtype=np.float64)
    splits = max(1, min(splits, len(probs)))
    scores = []
    for part in np.array_split(probs, splits):
        marginal = part.mean(axis=0, keepdims=True)
        kl = (part * (np.log(part + 1e-12) - np.log(marginal + 1e-12))).sum(axis=1)
        scores.append(float(np.exp(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))
