"""Where the pretrained weights of the real metrics are looked for, and whether they are there.

Inception (FID/IS): clean-fid's `inception-2015-12-05.pt`, which clean-fid keeps in /tmp.
AlexNet (LPIPS v0.1): torchvision's `alexnet-owt-7be5be79.pth` in the torch hub cache (the
lpips package ships only its linear layers). Each can also be given explicitly in params
(evaluate.inception_weights / evaluate.alexnet_weights) or by environment variable. When a
file is absent its metric is recorded as missing with the reason: never computed with other
weights under the real name.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

INCEPTION_NAME = "inception-2015-12-05"
INCEPTION_FILE = f"{INCEPTION_NAME}.pt"
INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
INCEPTION_ENV = "INCEPTION_WEIGHTS"
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
ALEXNET_ENV = "ALEXNET_WEIGHTS"


@dataclass
class WeightsStatus:
    """name; path: the file found (None if absent); looked: every place searched, in order;
    reason: why the metric cannot be computed (empty when found)."""

    name: str
    path: Path | None
    looked: list[Path]
    url: str

    @property
    def present(self) -> bool:
        return self.path is not None

    @property
    def reason(self) -> str:
        if self.present:
            return ""
        return (f"{self.name} weights not found (looked in: {', '.join(map(str, self.looked))}); "
                f"download {self.url} on a connected machine and put it at {self.looked[-1]} "
                f"(see `python -m pipeline weights`)")


def _find(name: str, filename: str, explicit: str, env: str, default_dir: Path, url: str) -> WeightsStatus:
    looked = []
    for candidate in (explicit, os.environ.get(env, "")):
        if candidate:
            looked.append(Path(candidate))
    looked.append(default_dir / filename)
    for path in looked:
        if path.is_file():
            return WeightsStatus(name, path, looked, url)
    return WeightsStatus(name, None, looked, url)


def inception(explicit: str = "") -> WeightsStatus:
    """clean-fid's Inception: params path, $INCEPTION_WEIGHTS, then clean-fid's own cache dir."""
    cache = Path("./" if platform.system() == "Windows" else "/tmp")  # cleanfid.features.feature_extractor
    return _find("Inception (clean-fid)", INCEPTION_FILE, explicit, INCEPTION_ENV, cache, INCEPTION_URL)


def alexnet(explicit: str = "") -> WeightsStatus:
    """torchvision's AlexNet for LPIPS: params path, $ALEXNET_WEIGHTS, then the torch hub cache."""
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    return _find("AlexNet (LPIPS v0.1)", ALEXNET_FILE, explicit, ALEXNET_ENV, cache, ALEXNET_URL)


@functools.lru_cache(maxsize=8)
def _digest(path: str, size: int, mtime: float) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def digest(path: str | Path) -> str:
    """Short sha256 of a weights file (recorded in the `features` column and in cache keys)."""
    st = Path(path).stat()
    return _digest(str(path), st.st_size, st.st_mtime)


METRICS_NEEDING = {  # weights -> the metric rows that are `missing` without them
    "inception": "fid, fid_64, fid_192, fid_768, fid_seeded, inception_score",
    "alexnet": "lpips",
}


def report(inception_path: str = "", alexnet_path: str = "") -> str:
    """Human-readable status of every weight file (python -m pipeline weights)."""
    lines = []
    for status, metrics in ((inception(inception_path), METRICS_NEEDING["inception"]),
                            (alexnet(alexnet_path), METRICS_NEEDING["alexnet"])):
        state = f"present: {status.path} (sha256 {digest(status.path)})" if status.present else "ABSENT"
        lines.append(f"{status.name} [{metrics}]: {state}")
        lines.append(f"  looked in: {', '.join(map(str, status.looked))}")
        if not status.present:
            lines.append(f"  get it: download {status.url} and place it at {status.looked[-1]}")
    lines.append(f"explicit paths: params evaluate.inception_weights / evaluate.alexnet_weights, "
                 f"or ${INCEPTION_ENV} / ${ALEXNET_ENV}")
    lines.append("the LPIPS v0.1 linear layers ship inside the lpips package (no download needed)")
    return "\n".join(lines)
