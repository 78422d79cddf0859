"""FFHQ at 256x256 (AVAE's high-resolution experiment; optional).

Source: the official PNG folder (images1024x1024/ with files 00000.png ... 69999.png, in
subfolders or flat), optionally with the official metadata `ffhq-dataset-v2.json` beside it:
when present, every image is checked against its `file_md5` there as it is read (torchvision
has no FFHQ class, so the metadata is the official checksum list). Split as the metadata's
`category`: images 0-59,999 are training, 60,000-69,999 validation (stored as `test`).
Resize to 256 with Lanczos, as StyleGAN's dataset tool did for its lower resolutions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipeline.config import DatasetConfig
from pipeline.data import DatasetCorrupt
from pipeline.datasets import register
from pipeline.datasets.base import Dataset, Plan, capped
from pipeline.datasets.image_folder import EXTENSIONS, file_split, list_images

N_TRAIN = 60_000  # ffhq-dataset-v2.json: images below this index are 'training', the rest 'validation'
FIX = "download it again (https://github.com/NVlabs/ffhq-dataset)"


def official_md5(root: Path) -> dict[str, str]:
    """{file name: md5} from ffhq-dataset-v2.json beside/inside root (empty when absent)."""
    for path in (root / "ffhq-dataset-v2.json", root.parent / "ffhq-dataset-v2.json"):
        if path.is_file():
            try:
                entries = json.loads(path.read_text())
                return {Path(e["image"]["file_path"]).name: e["image"]["file_md5"] for e in entries.values()}
            except (ValueError, KeyError, TypeError) as e:
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
        images = [p for p in list_images(root) if Path(p).stem.isdigit() and Path(p).suffix in EXTENSIONS]
        md5 = official_md5(root)

        def check(rel: str, blob: bytes) -> None:
            expected = md5.get(Path(rel).name)
            if expected is not None and hashlib.md5(blob).hexdigest() != expected:
                raise DatasetCorrupt(f"{root / rel}: checksum mismatch with ffhq-dataset-v2.json; {FIX}")

        train = [p for p in images if int(Path(p).stem) < N_TRAIN]
        test = [p for p in images if int(Path(p).stem) >= N_TRAIN]
        splits = {"train": file_split(root, train[:capped(len(train), cfg.n_train)], pre, check if md5 else None),
                  "test": file_split(root, test[:capped(len(test), cfg.n_test)], pre, check if md5 else None)}
        sources = {"metadata": "ffhq-dataset-v2.json md5 per image" if md5 else "absent: images not checksummed",
                   "n_files": len(images)}
        return Plan(self.info(name, pre), splits, {"sources": sources, "preprocessing": vars(pre)})
