"""image_folder: any folder of images (jpg, jpeg, png, webp, bmp; searched recursively).

Images are taken in sorted relative-path order. Splits come from `split_file` (lines
"<relative path> <train|test>") or, without one, every 10th image (sorted index % 10 == 9)
is `test`. Preprocessing from params: `crop` (default: the largest centred square),
`resolution` (default 64), `resample`. There are no official checksums for a folder of
one's own: meta.json records the sha256 of the file list and of the split file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from pipeline.config import DatasetConfig
from pipeline.data import DatasetCorrupt, DatasetMissing, sha256_file
from pipeline.datasets import register
from pipeline.datasets.base import Dataset, Plan, Split, capped, decode_all

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def list_images(root: Path) -> list[str]:
    """Relative paths of the image files under root, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())


def read_split_file(path: Path, images: list[str]) -> dict[str, list[str]]:
    """'<relative path> <train|test>' lines -> {split: [paths]}; every path must exist among `images`."""
    known = set(images)
    splits = {"train": [], "test": []}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.rsplit(maxsplit=1)
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in splits:
            raise DatasetCorrupt(f"{path}:{number}: expected '<relative path> <train|test>', got {line!r}")
        if parts[0] not in known:
            raise DatasetCorrupt(f"{path}:{number}: {parts[0]} is not an image under the source folder")
        splits[parts[1]].append(parts[0])
    return splits


def folder_split(cfg: DatasetConfig, root: Path, images: list[str]) -> dict[str, list[str]]:
    """The split_file's split, or every 10th sorted image as test."""
    if cfg.split_file:
        path = Path(cfg.split_file)
        if not path.is_file():
            raise DatasetMissing(f"split_file {path} does not exist: give a file of '<relative path> <train|test>' "
                                 "lines, or leave split_file empty (every 10th image is test)")
        return read_split_file(path, images)
    return {"train": [p for i, p in enumerate(images) if i % 10 != 9],
            "test": [p for i, p in enumerate(images) if i % 10 == 9]}


def file_split(root: Path, names: list[str], pre, check=None) -> Split:
    """A Split decoding root/<name> per example (check(name, bytes) verifies a file first)."""
    def read(start: int, stop: int) -> tuple[np.ndarray, None]:
        blobs = []
        for name in names[start:stop]:
            blob = (root / name).read_bytes()
            if check is not None:
                check(name, blob)
            blobs.append((blob, str(root / name)))
        return decode_all(blobs, 3, pre), None

    return Split(len(names), (3, pre.resolution, pre.resolution), read, labelled=False)


@register
class ImageFolder(Dataset):
    name = "image_folder"
    origin = "any folder of images (datasets.<name>.source)"
    env = "IMAGE_FOLDER_DIR"
    files = "a folder of image files"
    resolution, crop, resample = 64, "square", "bilinear"

    def present(self, root: Path) -> bool:
        return root.is_dir() and any(p.suffix.lower() in EXTENSIONS for p in root.rglob("*"))

    def plan(self, cfg: DatasetConfig, root: Path, name: str) -> Plan:
        pre = self.preprocessing(cfg)
        images = list_images(root)
        split = folder_split(cfg, root, images)
        sources = {"file_list_sha256": hashlib.sha256("\n".join(images).encode()).hexdigest(), "n_files": len(images)}
        if cfg.split_file:
            sources["split_file_sha256"] = sha256_file(Path(cfg.split_file))
        splits = {s: file_split(root, names[:capped(len(names), cap)], pre)
                  for (s, names), cap in zip(split.items(), (cfg.n_train, cfg.n_test))}
        return Plan(self.info(name, pre), splits, {"sources": sources, "preprocessing": vars(pre)})
