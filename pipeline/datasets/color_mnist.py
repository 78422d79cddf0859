"""ColorMNIST as stacked MNIST (Metz et al. 2016, Unrolled GANs §3.3.2; α-GAN §5's dataset).

Each image stacks three MNIST digits drawn independently and uniformly from the same
official split as its red, green and blue channels (28x28x3, padded to 32x32 by default);
its label is 100·d_R + 10·d_G + d_B (1,000 modes). Training images come from MNIST's train
split, test images from its test split, drawn with `seed` (sizes n_train / n_test, default
60,000 / 10,000). Built from the verified MNIST files (datasets.<name>.source or $MNIST_DIR).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.datasets import register
from pipeline.datasets.base import RAW_ROOT, Dataset, Plan, Split
from pipeline.datasets.fashion_mnist import pad_to
from pipeline.datasets.mnist import MNIST, load_mnist, mnist_folder
from pipeline.sections import DatasetConfig


def stack_digits(images: np.ndarray, labels: np.ndarray, picks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """picks: N x 3 indices -> N x 3 x H x W images (channel c = digit picks[:, c]) and 1000-way labels."""
    x = np.stack([images[picks[:, c]] for c in range(3)], 1)
    y = 100 * labels[picks[:, 0]] + 10 * labels[picks[:, 1]] + labels[picks[:, 2]]
    return x, y.astype(np.int64)


@register
class ColorMNIST(Dataset):
    name = "color_mnist"
    origin = "MNIST's official files (stacked into colour images here)"
    env = MNIST.env
    files = MNIST.files
    channels, n_classes, resolution = 3, 1000, 32
    downloadable = True

    def default_roots(self) -> list[Path]:
        return [RAW_ROOT / "mnist"]  # shares MNIST's raw files

    def present(self, root: Path) -> bool:
        return mnist_folder(root) is not None

    def missing(self, root: Path) -> list[Path]:
        return MNIST().missing(root)

    def fetch(self, root: Path) -> None:
        MNIST().fetch(root)

    def plan(self, cfg: DatasetConfig, root: Path, name: str) -> Plan:
        pre = self.preprocessing(cfg)
        arrays, sources = load_mnist(root)
        rng = np.random.default_rng(cfg.seed)
        splits = {}
        for split, n in (("train", cfg.n_train or 60_000), ("test", cfg.n_test or 10_000)):
            digits = pad_to(arrays[f"{split}_x"], pre.resolution, name)[:, 0]
            picks = rng.integers(0, len(digits), (n, 3))

            def read(start: int, stop: int, digits=digits, labels=arrays[f"{split}_y"], picks=picks):
                return stack_digits(digits, labels, picks[start:stop])

            splits[split] = Split(n, (3, pre.resolution, pre.resolution), read)
        return Plan(self.info(name, pre), splits,
                    {"sources": sources, "source_dir": str(mnist_folder(root)),
                     "preprocessing": f"stacked MNIST (3 independent digits as RGB), zero-pad 28 -> {pre.resolution}"})
