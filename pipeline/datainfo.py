"""What a model knows about its data, the two scales images live on, and the dataset errors.

A leaf module: dataset declarations, networks, methods and the prepared format all import it,
and it imports none of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


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


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks (sha256 for prepared files, md5 for official archives)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def sha256_file(path: Path) -> str:
    return file_digest(path, "sha256")


def to_model_scale(x: torch.Tensor, info: DataInfo) -> torch.Tensor:
    """uint8 images -> float in [-1, 1]; vectors pass through as float."""
    if info.kind == "image":
        return x.float().div_(127.5).sub_(1.0)
    return x.float()


def to_unit_scale(x: torch.Tensor) -> torch.Tensor:
    """Model-scale images in [-1, 1] -> [0, 1] (the scale metrics are reported on)."""
    return (x.clamp(-1, 1) + 1) / 2
