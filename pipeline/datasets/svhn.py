"""SVHN (AVAE T1): the official cropped-digits .mat files, 32x32.

Source: a folder with train_32x32.mat and test_32x32.mat (torchvision's layout). Checksums:
the md5s torchvision.datasets.SVHN.split_list gives. Train (73,257) / test (26,032); the
'extra' split is not used (AVAE trained on TFDS svhn_cropped 'train'). Label 10 means
digit 0, mapped to 0 as torchvision does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.datainfo import DatasetCorrupt
from pipeline.datasets import register
from pipeline.datasets.base import Dataset, Plan, Split, absent_files, capped, resize_batch, verify_md5
from pipeline.sections import DatasetConfig

# torchvision.datasets.SVHN.split_list (torchvision 0.29): file and md5 per split
MD5 = {"train": ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
       "test": ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3")}
FIX = "download it again from http://ufldl.stanford.edu/housenumbers/"


def read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """X (32 x 32 x 3 x N) and y (N x 1, 10 = digit 0) -> N x 3 x 32 x 32 uint8 and int64 labels."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(path, variable_names=["X", "y"])
        x = np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1), dtype=np.uint8)
        y = mat["y"].astype(np.int64).ravel() % 10  # SVHN stores digit 0 as 10
    except Exception as e:  # scipy raises many types for a malformed file (OSError, IndexError, MatReadError, ...)
        raise DatasetCorrupt(f"{path}: not a readable SVHN .mat file ({type(e).__name__}: {e}; a truncated "
                             f"download?); {FIX}") from None
    if len(x) != len(y):
        raise DatasetCorrupt(f"{path}: {len(x)} images but {len(y)} labels; {FIX}")
    return x, y


@register
class SVHN(Dataset):
    name = "svhn"
    origin = "http://ufldl.stanford.edu/housenumbers/ (format 2, cropped digits)"
    env = "SVHN_DIR"
    files = "train_32x32.mat and test_32x32.mat"
    n_classes, resolution = 10, 32
    downloadable = True

    def present(self, root: Path) -> bool:
        return all((root / fname).is_file() for fname, _ in MD5.values())

    def missing(self, root: Path) -> list[Path]:
        return absent_files([root], [fname for fname, _ in MD5.values()])

    def fetch(self, root: Path) -> None:
        from torchvision.datasets import SVHN as TorchSVHN

        for split in MD5:
            TorchSVHN(str(root), split=split, download=True)

    def plan(self, cfg: DatasetConfig, root: Path, name: str) -> Plan:
        pre = self.preprocessing(cfg)
        sources, splits = {}, {}
        for split, cap in (("train", cfg.n_train), ("test", cfg.n_test)):
            fname, md5 = MD5[split]
            sources[fname] = {"md5": verify_md5(root / fname, md5, FIX)}
            x, y = read_mat(root / fname)  # scipy reads a .mat variable whole (train: 176 MB of pixels)

            def read(start: int, stop: int, x=x, y=y):
                return resize_batch(x[start:stop], pre), y[start:stop]

            splits[split] = Split(capped(len(x), cap), (3, pre.resolution, pre.resolution), read)
        return Plan(self.info(name, pre), splits, {"sources": sources, "preprocessing": vars(pre)})
