"""Where the pretrained weights of the real metrics are looked for, and whether they are the
published files.

Inception (FID/KID/IS/PRDC): clean-fid's `inception-2015-12-05.pt` (stylegan2-ada's TorchScript
file), which clean-fid keeps in /tmp. AlexNet (LPIPS v0.1): torchvision's
`alexnet-owt-7be5be79.pth` in the torch hub cache; LPIPS' own linear layers ship inside the lpips
package (`weights/v0.1/alex.pth`). Each downloadable file can also be given explicitly in params
(evaluate.inception_weights / evaluate.alexnet_weights) or by environment variable. Every file is
checked against its published sha256 before use: an absent file, or any other file under its
name, makes its metric rows `missing` with the reason, never a value from other weights.
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
# published in crowsonkb/k-diffusion's k_diffusion/evaluation.py, which checks this download against it
INCEPTION_SHA256 = "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"
INCEPTION_ENV = "INCEPTION_WEIGHTS"
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
# torchvision's file name carries its first 8 hex digits; the whole: Hugging Face's LFS record of this file
# (huggingface.co/blanchon/image-gs-models-utils, torch/checkpoints/alexnet-owt-7be5be79.pth)
ALEXNET_SHA256 = "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02"
ALEXNET_ENV = "ALEXNET_WEIGHTS"
# lpips 0.1.4's weights/v0.1/alex.pth as PyPI ships it (richzhang/PerceptualSimilarity's lpips/weights/v0.1/alex.pth)
LPIPS_LINEAR_SHA256 = "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"
LPIPS_LINEAR_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth"


@dataclass
class WeightsStatus:
    """name; path: the file found (None if absent); looked: every place searched, in order;
    url: where the published file is; expected: its published sha256; actual: the found file's
    sha256 (empty when absent)."""

    name: str
    path: Path | None
    looked: list[Path]
    url: str
    expected: str
    actual: str = ""

    @property
    def present(self) -> bool:
        return self.path is not None

    @property
    def verified(self) -> bool:
        """Present and byte-identical to the published file."""
        return self.present and self.actual == self.expected

    @property
    def reason(self) -> str:
        """Why the metric cannot be computed (empty when verified)."""
        if self.verified:
            return ""
        if self.present:
            return (f"{self.name} weights {self.path} have sha256 {self.actual}, not the published {self.expected}; "
                    f"delete the file and download {self.url} again (see `python -m pipeline weights`)")
        return (f"{self.name} weights not found (looked in: {', '.join(map(str, self.looked))}); "
                f"download {self.url} on a connected machine and put it at {self.looked[-1]} "
                f"(see `python -m pipeline weights`)")


def _find(name: str, filename: str, explicit: str, env: str, default_dir: Path, url: str,
          expected: str) -> WeightsStatus:
    """The first existing file of explicit path, $env, default_dir/filename, with its sha256."""
    looked = [Path(c) for c in (explicit, os.environ.get(env, "")) if c] + [default_dir / filename]
    for path in looked:
        if path.is_file():
            return WeightsStatus(name, path, looked, url, expected, sha256(path))
    return WeightsStatus(name, None, looked, url, expected)


def inception(explicit: str = "") -> WeightsStatus:
    """clean-fid's Inception: params path, $INCEPTION_WEIGHTS, then clean-fid's own cache dir."""
    cache = Path("./" if platform.system() == "Windows" else "/tmp")  # cleanfid.features.feature_extractor
    return _find("Inception (clean-fid)", INCEPTION_FILE, explicit, INCEPTION_ENV, cache, INCEPTION_URL,
                 INCEPTION_SHA256)


def alexnet(explicit: str = "") -> WeightsStatus:
    """torchvision's AlexNet for LPIPS: params path, $ALEXNET_WEIGHTS, then the torch hub cache."""
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    return _find("AlexNet (LPIPS v0.1)", ALEXNET_FILE, explicit, ALEXNET_ENV, cache, ALEXNET_URL, ALEXNET_SHA256)


def lpips_linear() -> WeightsStatus:
    """The lpips package's v0.1 AlexNet linear layers, the file `lpips.LPIPS(pretrained=True)` loads."""
    import lpips

    path = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    return _find("LPIPS v0.1 linear layers", path.name, "", "", path.parent, LPIPS_LINEAR_URL, LPIPS_LINEAR_SHA256)


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime: float) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256(path: str | Path) -> str:
    """sha256 of a file (cached per path, size and modification time)."""
    st = Path(path).stat()
    return _sha256(str(path), st.st_size, st.st_mtime)


def digest(path: str | Path) -> str:
    """Short sha256 of a weights file (recorded in the `features` column and in cache keys)."""
    return sha256(path)[:16]


def report(rows_needing: dict[str, list[str]], inception_path: str = "", alexnet_path: str = "") -> str:
    """Human-readable status of every weight file (python -m pipeline weights); rows_needing: the
    metric rows `missing` without the Inception ("inception") and LPIPS ("lpips") files, as the
    metric registry (pipeline.evaluate.registry.rows_needing) states them."""
    lines = []
    for status, needing in ((inception(inception_path), rows_needing["inception"]),
                            (alexnet(alexnet_path), rows_needing["lpips"]), (lpips_linear(), rows_needing["lpips"])):
        metrics = ", ".join(needing)
        state = (f"verified: {status.path} (sha256 {status.actual})" if status.verified
                 else f"WRONG FILE: {status.reason}" if status.present else "ABSENT")
        lines.append(f"{status.name} [{metrics}]: {state}")
        lines.append(f"  looked in: {', '.join(map(str, status.looked))}; published sha256 {status.expected}")
        if not status.present:
            lines.append(f"  get it: download {status.url} and place it at {status.looked[-1]}")
    lines.append(f"explicit paths: params evaluate.inception_weights / evaluate.alexnet_weights, "
                 f"or ${INCEPTION_ENV} / ${ALEXNET_ENV}")
    return "\n".join(lines)
