"""image_folder: any folder of images (jpg, jpeg, png, webp, bmp; searched recursively).

Images are taken in sorted relative-path order. Labels, as torchvision.datasets.ImageFolder
reads them: with every image in a class subfolder (`<class>/<image>`, deeper folders
allowed), the class names sorted as strings are the labels 0, 1, ...; with every image
directly in the folder the dataset is unlabelled; a folder with both is refused. A
`split_file` line "<relative path> <train|test> <integer label>" gives labels itself (then
the layout does not matter); without the label column the layout decides. Splits come from
`split_file` (lines "<relative path> <train|test>[ <label>]") or, without one, every 10th
image (sorted index % 10 == 9) is `test`, which needs at least 10 images. meta.json's
`labels` records the source of the labels, their number and the class names.
Preprocessing from params: `crop` (default: the largest centred square), `resolution`
(default 64), `resample`. There are no official checksums for a folder of one's own:
meta.json records the sha256 of the file list and of the split file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from pipeline.datainfo import DataInfo, DatasetCorrupt, DatasetMissing, sha256_file
from pipeline.datasets import register
from pipeline.datasets.base import Dataset, Expected, Plan, Split, capped, decode_all
from pipeline.sections import DatasetConfig

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
SPLITS = ("train", "test")
LINE = "'<relative path> <train|test>' lines, optionally with a third column, an integer label"


def list_images(root: Path) -> list[str]:
    """Relative paths of the image files under root, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())


def parse_line(line: str) -> tuple[str, str, int | None] | None:
    """'<path> <split>[ <label>]' -> (path, split, label or None); None when it is not such a line."""
    parts = line.rsplit(maxsplit=1)
    if len(parts) == 2 and parts[1] in SPLITS:
        return parts[0], parts[1], None
    parts = line.rsplit(maxsplit=2)
    if len(parts) == 3 and parts[1] in SPLITS and parts[2].isascii() and parts[2].isdigit():
        return parts[0], parts[1], int(parts[2])
    return None


def read_lines(split_file: str) -> list[str]:
    """The non-empty lines of a split file ([] when none is set or it does not exist)."""
    path = Path(split_file)
    return [line for line in path.read_text().splitlines() if line.strip()] if split_file and path.is_file() else []


def read_split_file(path: Path, images: list[str]) -> tuple[dict[str, list[str]], dict[str, int] | None]:
    """The split file -> ({split: [paths]}, {path: label} or None when it has no label column);
    every path must exist among `images`, and either every line has a label or none has."""
    known, listed = set(images), set()
    splits, labels, column = {s: [] for s in SPLITS}, {}, None  # column: whether lines carry a label
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parsed = parse_line(line)
        if parsed is None:
            raise DatasetCorrupt(f"{path}:{number}: expected {LINE} (0, 1, ...), got {line!r}")
        rel, split, label = parsed
        if rel not in known:
            raise DatasetCorrupt(f"{path}:{number}: {rel} is not an image under the source folder")
        if rel in listed:
            raise DatasetCorrupt(f"{path}:{number}: {rel} is listed twice; list each image once")
        column = label is not None if column is None else column
        if column != (label is not None):
            raise DatasetCorrupt(f"{path}:{number}: some lines have a label column and some not; "
                                 "give every line a label, or none")
        listed.add(rel)
        splits[split].append(rel)
        if label is not None:
            labels[rel] = label
    return splits, labels if column else None


def folder_classes(root: Path, images: list[str]) -> list[str]:
    """Class names (sorted, as torchvision's ImageFolder) when every image is in a subfolder;
    [] when every image is directly in root; DatasetCorrupt naming the fix for a mix."""
    top = [p for p in images if len(Path(p).parts) == 1]
    nested = [p for p in images if len(Path(p).parts) > 1]
    if top and nested:
        raise DatasetCorrupt(f"{root}: {len(top)} images directly in it (e.g. {top[0]}) and {len(nested)} in "
                             f"subfolders (e.g. {nested[0]}): put every image in a class subfolder "
                             "(<class>/<image>, labelled) or every image directly in the folder (unlabelled), "
                             "or give a split_file with a label column")
    return sorted({Path(p).parts[0] for p in nested})


def folder_split(root: Path, images: list[str], name: str) -> dict[str, list[str]]:
    """Every 10th sorted image as test, the rest train (at least 10 images)."""
    if len(images) < 10:
        raise DatasetCorrupt(f"{root}: {len(images)} images; without a split_file every 10th image (sorted) is "
                             f"the test split, which needs at least 10 images: add images, or set "
                             f"datasets.{name}.split_file to a file of {LINE}")
    return {"train": [p for i, p in enumerate(images) if i % 10 != 9],
            "test": [p for i, p in enumerate(images) if i % 10 == 9]}


def labelled_split(cfg: DatasetConfig, root: Path, images: list[str],
                   name: str) -> tuple[dict[str, list[str]], dict[str, int] | None, dict]:
    """({split: [paths]}, {path: label} or None, meta.json's `labels` record)."""
    if not cfg.split_file:
        split, labels = folder_split(root, images, name), None
    else:
        path = Path(cfg.split_file)
        if not path.is_file():
            raise DatasetMissing(f"split_file {path} does not exist: give a file of {LINE}, or leave "
                                 "split_file empty (every 10th image is test)")
        split, labels = read_split_file(path, images)
        empty = [s for s in SPLITS if not split[s]]
        if empty:
            raise DatasetCorrupt(f"{path}: lists no {empty[0]} image; every split needs at least one")
    if labels is not None:
        n_classes = max(labels.values()) + 1
        record = {"labelled": True, "source": "split_file", "n_classes": n_classes,
                  "classes": [str(c) for c in range(n_classes)]}
        return split, labels, record
    classes = folder_classes(root, images)
    if not classes:
        return split, None, {"labelled": False, "source": "none (images directly in the folder)", "n_classes": 0,
                             "classes": []}
    index = {c: i for i, c in enumerate(classes)}
    labels = {p: index[Path(p).parts[0]] for p in images}
    return split, labels, {"labelled": True, "source": "class subfolders", "n_classes": len(classes),
                           "classes": classes}


def file_split(root: Path, names: list[str], pre, check=None, labels: list[int] | None = None) -> Split:
    """A Split decoding root/<name> per example (check(name, bytes) verifies a file first);
    labelled when `labels` (one per name) is given."""
    targets = None if labels is None else np.asarray(labels, dtype=np.int64)

    def read(start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        blobs = []
        for name in names[start:stop]:
            blob = (root / name).read_bytes()
            if check is not None:
                check(name, blob)
            blobs.append((blob, str(root / name)))
        return decode_all(blobs, 3, pre), None if targets is None else targets[start:stop]

    return Split(len(names), (3, pre.resolution, pre.resolution), read, labelled=labels is not None)


@register
class ImageFolder(Dataset):
    name = "image_folder"
    origin = "any folder of images (datasets.<name>.source)"
    env = "IMAGE_FOLDER_DIR"
    files = "a folder of image files"
    resolution, crop, resample = 64, "square", "bilinear"

    def present(self, root: Path) -> bool:
        return root.is_dir() and any(p.suffix.lower() in EXTENSIONS for p in root.rglob("*"))

    def expected(self, cfg: DatasetConfig, name: str) -> Expected:
        """Labels as `plan` will read them from the raw folder (its layout and split_file; the
        same errors for a bad layout); n_classes None while the folder is not there."""
        root = self.locate(cfg)
        if root is None:
            listed = [parse_line(line) for line in read_lines(cfg.split_file)]
            if listed and all(entry is not None and entry[2] is not None for entry in listed):
                n_classes = max(entry[2] for entry in listed) + 1  # the split file's label column decides
                return Expected("image", n_classes, f"its split_file {cfg.split_file}; no raw folder yet")
            where = ", ".join(str(path) for _, path in self.candidates(cfg))
            return Expected("image", None, f"no raw folder yet (looked in {where})")
        _, _, record = labelled_split(cfg, root, list_images(root), name)
        return Expected("image", record["n_classes"], f"its raw folder {root}", record)

    def plan(self, cfg: DatasetConfig, root: Path, name: str) -> Plan:
        pre = self.preprocessing(cfg)
        images = list_images(root)
        split, labels, record = labelled_split(cfg, root, images, name)
        sources = {"file_list_sha256": hashlib.sha256("\n".join(images).encode()).hexdigest(), "n_files": len(images)}
        if cfg.split_file:
            sources["split_file_sha256"] = sha256_file(Path(cfg.split_file))
        splits = {}
        for (s, names), cap in zip(split.items(), (cfg.n_train, cfg.n_test)):
            names = names[:capped(len(names), cap)]
            splits[s] = file_split(root, names, pre, labels=None if labels is None else [labels[p] for p in names])
        info = DataInfo(name, "image", (3, pre.resolution, pre.resolution), "[-1,1]", record["n_classes"])
        return Plan(info, splits, {"sources": sources, "preprocessing": vars(pre), "labels": record})
