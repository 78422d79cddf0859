"""A researcher's own image folder, generated: grayscale PNGs of one bright shape on a dark
background (class `disc` or `square`, random place and size), in class subfolders or flat."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("disc", "square")


def shape_image(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One size x size uint8 image: a filled disc or square of random radius and centre, plus noise."""
    r = rng.uniform(size / 8, size / 4)
    cy, cx = rng.uniform(r, size - r, 2)
    yy, xx = np.mgrid[:size, :size] + 0.5
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r if kind == "disc" else np.maximum(abs(yy - cy), abs(xx - cx)) <= r
    image = np.where(inside, 220.0, 30.0) + rng.normal(0, 8, (size, size))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_shapes(root: Path, n_per_class: int, labelled: bool, size: int = 32, seed: int = 0) -> Path:
    """n_per_class images of each class under root: in <class>/ subfolders (labelled, torchvision's
    ImageFolder layout) or all directly in root (unlabelled)."""
    rng = np.random.default_rng(seed)
    for kind in CLASSES:
        folder = Path(root) / kind if labelled else Path(root)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            Image.fromarray(shape_image(kind, size, rng), "L").save(folder / f"{kind}_{i:04d}.png")
    return Path(root)
