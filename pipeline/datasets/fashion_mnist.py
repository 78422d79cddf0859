"""Fashion-MNIST (the default that runs offline): the original IDX files, 28x28 padded to 32x32.

Verified against the sha256 of the decompressed official IDX payloads
(`FASHION_MNIST_FILES`: Debian recompresses the .gz wrappers, the content is
the same); official 60k/10k train/test split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.datainfo import DatasetCorrupt, DatasetMissing
from pipeline.datasets import register
from pipeline.datasets.base import Dataset, Plan, array_split, capped, check_counts, read_idx
from pipeline.sections import DatasetConfig

# sha256 of the decompressed IDX payloads of the official Fashion-MNIST release (the .gz
# wrappers differ between distributions, e.g. Debian recompresses them; the content does not).
FASHION_MNIST_FILES = {
    "train_x": ("train-images-idx3-ubyte", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train_y": ("train-labels-idx1-ubyte", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "test_x": ("t10k-images-idx3-ubyte", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "test_y": ("t10k-labels-idx1-ubyte", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}
FASHION_MNIST_DEFAULT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "FASHION_MNIST_DIR"
FASHION_MNIST_HELP = (
    "Install Debian's package: `sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist` "
    f"(it puts the IDX files in {FASHION_MNIST_DEFAULT}), or point datasets.fashion_mnist.source in "
    f"params.yaml (or ${FASHION_MNIST_ENV}) at a folder holding the four original *-idx?-ubyte[.gz] files."
)


def find_idx(folder: Path, stem: str, help_text: str) -> Path:
    """`<stem>.gz` or `<stem>` in folder."""
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.exists():
            return candidate
    raise DatasetMissing(f"file {stem}[.gz] not found in {folder}. {help_text}")


def pad_to(images: np.ndarray, resolution: int, name: str) -> np.ndarray:
    """N x 28 x 28 -> N x 1 x R x R: R = 28 keeps them, R = 32 pads 2 zero pixels each side."""
    if resolution not in (28, 32):
        raise DatasetMissing(f"datasets.{name}.resolution = {resolution}: MNIST-family images are 28 (native) "
                             "or 32 (zero-padded) pixels")
    pad = (resolution - 28) // 2
    return np.pad(images, ((0, 0), (pad, pad), (pad, pad)))[:, None]


@register
class FashionMNIST(Dataset):
    name = "fashion_mnist"
    origin = "https://github.com/zalandoresearch/fashion-mnist (or Debian's dataset-fashion-mnist)"
    env = FASHION_MNIST_ENV
    files = "the four *-idx?-ubyte[.gz] files"
    channels, n_classes, resolution = 1, 10, 32

    def default_roots(self) -> list[Path]:
        return [Path(FASHION_MNIST_DEFAULT), *super().default_roots()]

    def instructions(self) -> str:
        return FASHION_MNIST_HELP

    def present(self, root: Path) -> bool:
        return not self.absent_stems(root)

    def absent_stems(self, root: Path) -> list[Path]:
        return [root / f"{stem}[.gz]" for stem, _ in FASHION_MNIST_FILES.values()
                if not (root / f"{stem}.gz").exists() and not (root / stem).exists()]

    def missing(self, root: Path) -> list[Path]:
        absent = self.absent_stems(root)
        return absent if len(absent) < len(FASHION_MNIST_FILES) else []

    def plan(self, cfg: DatasetConfig, root: Path, name: str) -> Plan:
        pre = self.preprocessing(cfg)
        arrays, sources, paths = {}, {}, {}
        for key, (stem, digest) in FASHION_MNIST_FILES.items():  # read at call time (tests pin it)
            path = paths[key] = find_idx(root, stem, FASHION_MNIST_HELP)
            array, raw = read_idx(path)
            if raw != digest:
                raise DatasetCorrupt(f"{path}: checksum mismatch (sha256 of its content is {raw}, the official "
                                     f"release has {digest}); delete it and reinstall. {FASHION_MNIST_HELP}")
            sources[path.name] = {"content_sha256": raw}
            arrays[key] = pad_to(array, pre.resolution, name) if key.endswith("_x") else array.astype(np.int64)
        splits = {}
        for split in ("train", "test"):
            check_counts(arrays[f"{split}_x"], paths[f"{split}_x"], arrays[f"{split}_y"], paths[f"{split}_y"],
                         f"delete them and reinstall. {FASHION_MNIST_HELP}")
            n = capped(len(arrays[f"{split}_x"]), cfg.n_train if split == "train" else cfg.n_test)
            splits[split] = array_split(arrays[f"{split}_x"][:n], arrays[f"{split}_y"][:n], pre)
        return Plan(self.info(name, pre), splits, {"sources": sources, "preprocessing": "zero-pad 28 -> 32"
                                                    if pre.resolution == 32 else "none"})
