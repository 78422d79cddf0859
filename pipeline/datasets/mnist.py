"""MNIST: the original IDX .gz files (LSR-GAN, 004), 28x28, padded to 32x32 by default.

Checksums: the md5 of the official .gz files as torchvision.datasets.MNIST.resources lists
them. Official 60k/10k train/test split; `resolution: 28` keeps the native size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.datasets import register
from pipeline.datasets.base import read_idx
from pipeline.datasets.base import Dataset, Plan, absent_files, array_split, capped, check_counts, verify_md5
from pipeline.datasets.fashion_mnist import pad_to
from pipeline.sections import DatasetConfig

# torchvision.datasets.MNIST.resources (torchvision 0.29): official .gz files and their md5
MD5 = {
    "train_x": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_y": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_x": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    "test_y": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}
FIX = "download it again (torchvision MNIST or https://ossci-datasets.s3.amazonaws.com/mnist/)"


def mnist_folder(root: Path) -> Path | None:
    """root itself or torchvision's layout root/MNIST/raw, whichever holds the four .gz files."""
    for folder in (root, root / "MNIST" / "raw"):
        if all((folder / fname).exists() for fname, _ in MD5.values()):
            return folder
    return None


def load_mnist(root: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The four verified arrays (N x 28 x 28 uint8 images, int64 labels) and their source checksums."""
    folder = mnist_folder(root)
    arrays, sources = {}, {}
    for key, (fname, md5) in MD5.items():  # MD5 read at call time (tests pin it)
        sources[fname] = {"md5": verify_md5(folder / fname, md5, FIX)}
        array, _ = read_idx(folder / fname)
        arrays[key] = array if key.endswith("_x") else array.astype(np.int64)
    for split in ("train", "test"):
        check_counts(arrays[f"{split}_x"], folder / MD5[f"{split}_x"][0],
                     arrays[f"{split}_y"], folder / MD5[f"{split}_y"][0], FIX)
    return arrays, sources


@register
class MNIST(Dataset):
    name = "mnist"
    origin = "http://yann.lecun.com/exdb/mnist/ (torchvision mirror https://ossci-datasets.s3.amazonaws.com/mnist/)"
    env = "MNIST_DIR"
    files = "the four original *-idx?-ubyte.gz files"
    channels, n_classes, resolution = 1, 10, 32
    downloadable = True

    def present(self, root: Path) -> bool:
        return mnist_folder(root) is not None

    def missing(self, root: Path) -> list[Path]:
        return absent_files([root, root / "MNIST" / "raw"], [fname for fname, _ in MD5.values()])

    def fetch(self, root: Path) -> None:
        from torchvision.datasets import MNIST as TorchMNIST

        TorchMNIST(str(root), download=True)  # writes root/MNIST/raw/*.gz (verified by torchvision's md5)

    def plan(self, cfg: DatasetConfig, root: Path, name: str) -> Plan:
        pre = self.preprocessing(cfg)
        arrays, sources = load_mnist(root)
        splits = {}
        for split, cap in (("train", cfg.n_train), ("test", cfg.n_test)):
            n = capped(len(arrays[f"{split}_x"]), cap)
            splits[split] = array_split(pad_to(arrays[f"{split}_x"][:n], pre.resolution, name),
                                        arrays[f"{split}_y"][:n], pre)
        return Plan(self.info(name, pre), splits, {"sources": sources, "source_dir": str(mnist_folder(root)),
                                                    "preprocessing": f"zero-pad 28 -> {pre.resolution}"})
