"""Datasets: raw files -> a compact prepared format -> batches on the training device.

Prepared format (one folder per dataset): `<split>_x.npy` (uint8 images N x C x H x W, or
float32 points N x D for vector data), `<split>_y.npy` (int64 labels, optional) and
`meta.json` (shape, scale, classes, the sha256 of every array file and of every raw source
file). Training memory-maps the arrays; `load_prepared` verifies the checksums.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pipeline.config import DatasetConfig

FORMAT_VERSION = 1


class DatasetMissing(FileNotFoundError):
    """Raw files of a dataset are absent; the message says how to get them."""


class DatasetCorrupt(ValueError):
    """Raw or prepared files fail verification; the message names the file and the fix."""


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its data.

    name; kind: 'image' or 'vector'; shape: one example's shape (C, H, W) or (D,);
    scale: the model-side value range ('[-1,1]' for tanh outputs, 'raw' for vectors);
    n_classes: label count (0 if unlabelled).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    scale: str
    n_classes: int

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def resolution(self) -> int:
        return self.shape[-1]

    @property
    def dim(self) -> int:
        return int(np.prod(self.shape))

    @classmethod
    def from_dict(cls, d: dict) -> "DataInfo":
        return cls(name=d["name"], kind=d["kind"], shape=tuple(d["shape"]), scale=d["scale"],
                   n_classes=int(d["n_classes"]))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- IDX (MNIST family)

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> tuple[np.ndarray, str]:
    """Read an IDX file (optionally gzipped), checking its magic number and length.

    Returns the array and the sha256 of the decompressed file (what FASHION_MNIST_FILES pins).
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            blob = f.read()
    except (OSError, EOFError) as e:
        raise DatasetCorrupt(f"{path}: cannot be read ({e}); delete it and reinstall the dataset") from None
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0 or blob[2] not in IDX_DTYPES:
        raise DatasetCorrupt(f"{path}: not an IDX file (bad magic number); delete it and reinstall the dataset")
    ndim = blob[3]
    dims = struct.unpack(">" + "I" * ndim, blob[4:4 + 4 * ndim])
    dtype = np.dtype(IDX_DTYPES[blob[2]])
    expected = 4 + 4 * ndim + int(np.prod(dims)) * dtype.itemsize
    if len(blob) != expected:
        raise DatasetCorrupt(f"{path}: {len(blob)} bytes where the header promises {expected} "
                             "(truncated download?); delete it and reinstall the dataset")
    array = np.frombuffer(blob, dtype=dtype, offset=4 + 4 * ndim).reshape(dims)
    return array, hashlib.sha256(blob).hexdigest()


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


def fashion_mnist_source(cfg: DatasetConfig) -> Path:
    """The folder holding the raw files: params source, then $FASHION_MNIST_DIR, then Debian's path."""
    return Path(cfg.source or os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DEFAULT)


def _find_idx(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.exists():
            return candidate
    raise DatasetMissing(f"Fashion-MNIST file {stem}[.gz] not found in {folder}. {FASHION_MNIST_HELP}")


def load_fashion_mnist(cfg: DatasetConfig) -> tuple[dict[str, np.ndarray], dict]:
    """The official train/test split, verified, padded from 28x28 to 32x32 with zeros."""
    folder = fashion_mnist_source(cfg)
    arrays, sources = {}, {}
    for key, (stem, digest) in FASHION_MNIST_FILES.items():
        path = _find_idx(folder, stem)
        array, raw = read_idx(path)
        if raw != digest:
            raise DatasetCorrupt(f"{path}: checksum mismatch (sha256 of its content is {raw}, the official "
                                 f"release has {digest}); delete it and reinstall. {FASHION_MNIST_HELP}")
        sources[path.name] = {"content_sha256": raw}
        if key.endswith("_x"):
            array = np.pad(array, ((0, 0), (2, 2), (2, 2)))[:, None]  # 28x28 -> 1x32x32
        else:
            array = array.astype(np.int64)
        arrays[key] = array
    for split in ("train", "test"):
        cap = cfg.n_train if split == "train" else cfg.n_test
        if cap:
            arrays[f"{split}_x"], arrays[f"{split}_y"] = arrays[f"{split}_x"][:cap], arrays[f"{split}_y"][:cap]
    info = DataInfo("fashion_mnist", "image", (1, 32, 32), "[-1,1]", 10)
    return arrays, {"info": asdict(info), "sources": sources, "source_dir": str(folder)}


# ---------------------------------------------------------------- toy2d (AVAE §5.1)


def toy2d_sample(n: int, rng: np.random.Generator) -> np.ndarray:
    """AVAE §5.1: z1, z2, eps ~ N(0,1); x = (3 z1 + 0.1 eps, cos(3 z1) + tanh(3 z2) + 0.1 eps)."""
    z1, z2, eps = rng.standard_normal((3, n))
    return np.stack([3 * z1 + 0.1 * eps, np.cos(3 * z1) + np.tanh(3 * z2) + 0.1 * eps], 1).astype(np.float32)


def load_toy2d(cfg: DatasetConfig) -> tuple[dict[str, np.ndarray], dict]:
    rng = np.random.default_rng(cfg.seed)
    n_train, n_test = cfg.n_train or 20_000, cfg.n_test or 5_000
    arrays = {"train_x": toy2d_sample(n_train, rng), "test_x": toy2d_sample(n_test, rng)}
    info = DataInfo("toy2d", "vector", (2,), "raw", 0)
    return arrays, {"info": asdict(info), "sources": {"generator": "AVAE §5.1", "seed": cfg.seed}}


DATASETS: dict[str, Callable[[DatasetConfig], tuple[dict[str, np.ndarray], dict]]] = {
    "fashion_mnist": load_fashion_mnist,
    "toy2d": load_toy2d,
}


# ---------------------------------------------------------------- prepared format


def prepare(name: str, cfg: DatasetConfig, out_dir: Path) -> Path:
    """Load dataset `name` from its raw files and write the prepared folder atomically."""
    if name not in DATASETS:
        raise DatasetMissing(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    arrays, meta = DATASETS[name](cfg)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    checksums = {}
    for key, array in arrays.items():
        np.save(tmp / f"{key}.npy", np.ascontiguousarray(array))
        checksums[f"{key}.npy"] = sha256_file(tmp / f"{key}.npy")
    meta = {"format_version": FORMAT_VERSION, **meta, "files": checksums,
            "sizes": {k: int(len(v)) for k, v in arrays.items()}}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


@dataclass
class Prepared:
    """A prepared dataset: memory-mapped arrays and their DataInfo."""

    info: DataInfo
    arrays: dict[str, np.ndarray]
    meta: dict

    def x(self, split: str) -> np.ndarray:
        return self.arrays[f"{split}_x"]

    def y(self, split: str) -> np.ndarray | None:
        return self.arrays.get(f"{split}_y")


def load_prepared(folder: str | Path, verify: bool = True) -> Prepared:
    """Open a prepared folder (memory-mapped), verifying its checksums."""
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        raise DatasetMissing(f"{folder} holds no prepared dataset (no meta.json): run `dvc repro prepare` first")
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise DatasetCorrupt(f"{folder}: prepared format {meta.get('format_version')} != {FORMAT_VERSION}; "
                             "re-run `dvc repro prepare`")
    arrays = {}
    for fname, digest in meta["files"].items():
        path = folder / fname
        if verify and sha256_file(path) != digest:
            raise DatasetCorrupt(f"{path}: checksum differs from meta.json; re-run `dvc repro prepare` "
                                 "(or `dvc checkout`) to restore it")
        arrays[fname.removesuffix(".npy")] = np.load(path, mmap_mode="r")
    return Prepared(DataInfo.from_dict(meta["info"]), arrays, meta)


def to_model_scale(x: torch.Tensor, info: DataInfo) -> torch.Tensor:
    """uint8 images -> float in [-1, 1]; vectors pass through as float."""
    if info.kind == "image":
        return x.float().div_(127.5).sub_(1.0)
    return x.float()


def to_unit_scale(x: torch.Tensor) -> torch.Tensor:
    """Model-scale images in [-1, 1] -> [0, 1] (the scale metrics are reported on)."""
    return (x.clamp(-1, 1) + 1) / 2


class BatchSampler:
    """Batches drawn from a split held whole on the device, reshuffled every epoch.

    Its state (epoch permutation and position, generator state) goes into checkpoints, so a
    resumed run sees the same batches as an uninterrupted one.
    """

    def __init__(self, data: np.ndarray, info: DataInfo, batch_size: int, device: torch.device, seed: int):
        self.data = torch.from_numpy(np.array(data)).to(device)  # a private copy of the memory map
        self.info, self.batch_size, self.device = info, batch_size, device
        if len(self.data) < batch_size:
            raise ValueError(f"split has {len(self.data)} examples, fewer than batch_size {batch_size}")
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(self.data), generator=self.generator)
        self.position = 0

    def next(self) -> torch.Tensor:
        if self.position + self.batch_size > len(self.order):
            self.order = torch.randperm(len(self.data), generator=self.generator)
            self.position = 0
        idx = self.order[self.position:self.position + self.batch_size].to(self.device)
        self.position += self.batch_size
        return to_model_scale(self.data[idx], self.info)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.position = state["order"], state["position"]
