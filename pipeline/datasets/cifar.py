"""CIFAR-10 and CIFAR-100 (AVAE T1, α-GAN, LSR-GAN): the official python-pickle releases, 32x32.

Source: `cifar-10-python.tar.gz` / `cifar-100-python.tar.gz` (the file, or a folder holding
it) or the extracted `cifar-10-batches-py` / `cifar-100-python` folder. Checksums: the md5s
torchvision.datasets.CIFAR10 / CIFAR100 list (the archive, or each extracted batch file).
Official train (50,000) / test (10,000) split; CIFAR-100 uses its 100 fine labels.
"""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np

from pipeline.datainfo import DatasetCorrupt
from pipeline.datasets import register
from pipeline.datasets.base import Dataset, Plan, Split, absent_files, capped, resize_batch, verify_md5
from pipeline.sections import DatasetConfig


class CIFAR(Dataset):
    """The shared reader; subclasses declare the release (archive, folder, batches, md5s)."""

    archive: str  # official archive name
    folder: str  # its top folder
    archive_md5: str  # torchvision's tgz_md5
    batches: dict[str, list[tuple[str, str]]]  # split -> [(batch file, md5)] (torchvision train_list/test_list)
    label_key: str
    resolution, crop = 32, "none"
    downloadable = True

    def where(self, root: Path) -> tuple[str, Path] | None:
        """('archive', path) or ('folder', extracted folder) under root (or root itself)."""
        for kind, path in (("archive", root), ("archive", root / self.archive),
                           ("folder", root), ("folder", root / self.folder)):
            if kind == "archive" and path.is_file() and path.name == self.archive:
                return kind, path
            if kind == "folder" and path.is_dir() and all((path / b).exists() for b, _ in self.all_batches()):
                return kind, path
        return None

    def all_batches(self) -> list[tuple[str, str]]:
        return [b for split in ("train", "test") for b in self.batches[split]]

    def present(self, root: Path) -> bool:
        return self.where(root) is not None

    def missing(self, root: Path) -> list[Path]:
        return absent_files([root, root / self.folder], [b for b, _ in self.all_batches()])

    def fetch(self, root: Path) -> None:
        from torchvision import datasets

        getattr(datasets, self.torchvision_class)(str(root), download=True)  # keeps the verified .tar.gz

    def fix(self) -> str:
        return f"download {self.archive} again from {self.origin}"

    def read_batch(self, kind: str, path: Path, batch: str) -> tuple[np.ndarray, np.ndarray]:
        """One pickled batch -> (N x 3 x 32 x 32 uint8, int64 labels)."""
        try:
            if kind == "archive":
                with tarfile.open(path, "r:gz") as tar:
                    blob = tar.extractfile(f"{self.folder}/{batch}").read()
            else:
                blob = (path / batch).read_bytes()
            entry = pickle.loads(blob, encoding="latin1")
            x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            y = np.asarray(entry[self.label_key], dtype=np.int64)
        except (OSError, EOFError, KeyError, ValueError, tarfile.TarError, pickle.UnpicklingError) as e:
            raise DatasetCorrupt(f"{path}: batch {batch} unreadable ({type(e).__name__}: {e}); {self.fix()}") from None
        if len(x) != len(y):
            raise DatasetCorrupt(f"{path}: batch {batch} has {len(x)} images and {len(y)} labels; {self.fix()}")
        return x, y

    def plan(self, cfg: DatasetConfig, root: Path, name: str) -> Plan:
        pre = self.preprocessing(cfg)
        kind, path = self.where(root)
        if kind == "archive":
            sources = {path.name: {"md5": verify_md5(path, self.archive_md5, self.fix())}}
        else:
            sources = {b: {"md5": verify_md5(path / b, md5, self.fix())} for b, md5 in self.all_batches()}
        splits = {}
        for split, cap in (("train", cfg.n_train), ("test", cfg.n_test)):
            batches = [self.read_batch(kind, path, b) for b, _ in self.batches[split]]
            x = np.concatenate([b[0] for b in batches])
            y = np.concatenate([b[1] for b in batches])
            n = capped(len(x), cap)

            def read(start: int, stop: int, x=x, y=y):
                return resize_batch(x[start:stop], pre), y[start:stop]

            splits[split] = Split(n, (3, pre.resolution, pre.resolution), read)
        return Plan(self.info(name, pre), splits, {"sources": sources, "source_dir": str(path),
                                                    "preprocessing": vars(pre)})


@register
class CIFAR10(CIFAR):
    name = "cifar10"
    origin = "https://www.cs.toronto.edu/~kriz/cifar.html"
    env = "CIFAR10_DIR"
    files = "cifar-10-python.tar.gz (or its extracted cifar-10-batches-py folder)"
    n_classes = 10
    torchvision_class = "CIFAR10"
    # torchvision.datasets.CIFAR10 (torchvision 0.29): tgz_md5, train_list, test_list
    archive, folder, archive_md5 = "cifar-10-python.tar.gz", "cifar-10-batches-py", "c58f30108f718f92721af3b95e74349a"
    batches = {
        "train": [("data_batch_1", "c99cafc152244af753f735de768cd75f"),
                  ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
                  ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
                  ("data_batch_4", "634d18415352ddfa80567beed471001a"),
                  ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb")],
        "test": [("test_batch", "40351d587109b95175f43aff81a1287e")],
    }
    label_key = "labels"


@register
class CIFAR100(CIFAR):
    name = "cifar100"
    origin = "https://www.cs.toronto.edu/~kriz/cifar.html"
    env = "CIFAR100_DIR"
    files = "cifar-100-python.tar.gz (or its extracted cifar-100-python folder)"
    n_classes = 100
    torchvision_class = "CIFAR100"
    # torchvision.datasets.CIFAR100 (torchvision 0.29): tgz_md5, train_list, test_list
    archive, folder, archive_md5 = "cifar-100-python.tar.gz", "cifar-100-python", "eb9058c3a382ffc7106e4002c42a8d85"
    batches = {"train": [("train", "16019d7e3df5f24257cddd939b257f8d")],
               "test": [("test", "f0ef6b0ae62326f3e7ffdfab6717acfc")]}
    label_key = "fine_labels"
