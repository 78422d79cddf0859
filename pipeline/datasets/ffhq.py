"""FFHQ at 256x256 (AVAE's high-resolution experiment; optional).

Source: the official PNG folder (images1024x1024/ with files 00000.png ... 69999.png, in
subfolders or flat), or the download folder holding it (then only images1024x1024/ is read,
never thumbnails128x128/ or in-the-wild-images/; a download folder without images1024x1024/,
or a folder of thumbnails, is refused), optionally with the official metadata
`ffhq-dataset-v2.json` beside it:
when present, every image is checked against its `file_md5` there as it is read (torchvision
has no FFHQ class, so the metadata is the official checksum list). Split as the metadata's
`category`: images 0-59,999 are training, 60,000-69,999 validation (stored as `test`).
Resize to 256 with Lanczos, as StyleGAN's dataset tool did for its lower resolutions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipeline.datainfo import DatasetCorrupt
from pipeline.datasets import register
from pipeline.datasets.base import Dataset, Plan, capped
from pipeline.datasets.image_folder import EXTENSIONS, file_split, list_images
from pipeline.sections import DatasetConfig

N_TRAIN = 60_000  # ffhq-dataset-v2.json: images below this index are 'training', the rest 'validation'
FIX = "download it again (https://github.com/NVlabs/ffhq-dataset)"
IMAGES = "images1024x1024"  # the official download's folders: the aligned 1024 px PNGs this dataset reads,
OTHER_SETS = ("thumbnails128x128", "in-the-wild-images")  # and other image sets numbered the same way


def image_dir(root: Path, name: str) -> Path:
    """The folder of 1024 px PNGs: root/images1024x1024 in the official download folder, else root."""
    if (root / IMAGES).is_dir():
        return root / IMAGES
    point = f"point datasets.{name}.source (or $FFHQ_DIR) at the {IMAGES}/ folder or the folder holding it"
    if root.name in OTHER_SETS:
        raise DatasetCorrupt(f"{root}: FFHQ's {root.name}, not its {IMAGES} images; {point}")
    others = [name for name in OTHER_SETS if (root / name).is_dir()]
    if others:
        raise DatasetCorrupt(f"{root}: an FFHQ download folder with {', '.join(others)} but no {IMAGES}/; "
                             f"{FIX}, or {point}")
    return root


def numbered_images(folder: Path, name: str) -> list[str]:
    """Relative paths of the numbered PNGs under folder (sorted); an index found twice is refused."""
    images = [p for p in list_images(folder) if Path(p).stem.isdigit() and Path(p).suffix in EXTENSIONS]
    seen = {}
    for rel in images:
        index = int(Path(rel).stem)
        if index in seen:
            raise DatasetCorrupt(f"{folder}: image {index} is there twice ({seen[index]}, {rel}): keep one "
                                 f"copy of {IMAGES}/ under it, or point datasets.{name}.source at {IMAGES}/ itself")
        seen[index] = rel
    return images


def official_md5(root: Path) -> dict[str, tuple[str, str | None]]:
    """{file name: (md5 of the 1024 px image, md5 of its thumbnail)} from ffhq-dataset-v2.json
    beside/inside root (empty when absent)."""
    for path in (root / "ffhq-dataset-v2.json", root.parent / "ffhq-dataset-v2.json"):
        if path.is_file():
            try:
                entries = json.loads(path.read_text())
                return {Path(e["image"]["file_path"]).name: (e["image"]["file_md5"],
                                                             e.get("thumbnail", {}).get("file_md5"))
                        for e in entries.values()}
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise DatasetCorrupt(f"{path}: not the official FFHQ metadata ({e}); {FIX}") from None
    return {}


@register
class FFHQ(Dataset):
    name = "ffhq"
    origin = "https://github.com/NVlabs/ffhq-dataset (images1024x1024, ffhq-dataset-v2.json)"
    env = "FFHQ_DIR"
    files = "the images1024x1024 PNG folder (00000.png ... 69999.png), optionally ffhq-dataset-v2.json"
    resolution, crop, resample = 256, "none", "lanczos"

    def present(self, root: Path) -> bool:
        return root.is_dir() and any(root.rglob("00000.png"))

    def plan(self, cfg: DatasetConfig, root: Path, name: str) -> Plan:
        pre = self.preprocessing(cfg)
        root = image_dir(root, name)
        images = numbered_images(root, name)
        md5 = official_md5(root)

        def check(rel: str, blob: bytes) -> None:
            expected, thumbnail = md5.get(Path(rel).name, (None, None))
            got = hashlib.md5(blob).hexdigest()
            if expected is not None and got == thumbnail:
                raise DatasetCorrupt(f"{root / rel}: FFHQ's 128 px thumbnail of this image (ffhq-dataset-v2.json), "
                                     f"not the {IMAGES} one; put the 1024 px image in its place")
            if expected is not None and got != expected:
                raise DatasetCorrupt(f"{root / rel}: checksum mismatch with ffhq-dataset-v2.json; {FIX}")

        train = [p for p in images if int(Path(p).stem) < N_TRAIN]
        test = [p for p in images if int(Path(p).stem) >= N_TRAIN]
        splits = {"train": file_split(root, train[:capped(len(train), cfg.n_train)], pre, check if md5 else None),
                  "test": file_split(root, test[:capped(len(test), cfg.n_test)], pre, check if md5 else None)}
        sources = {"metadata": "ffhq-dataset-v2.json md5 per image" if md5 else "absent: images not checksummed",
                   "n_files": len(images)}
        return Plan(self.info(name, pre), splits, {"sources": sources, "source_dir": str(root),
                                                    "preprocessing": vars(pre)})
