"""CelebA (AVAE T1, α-GAN, 004): aligned-and-cropped faces, centre-cropped at 70 % and resized.

Source: a folder with `list_eval_partition.txt` and either `img_align_celeba.zip` or the
extracted `img_align_celeba/` folder of 202,599 jpgs (also torchvision's layout
<root>/celeba/...). Checksums: the md5s torchvision.datasets.CelebA.file_list gives for the
zip and the partition file; an extracted folder has no official checksum, so its files are
checked against the partition list (every listed image present and decodable).
Preprocessing (AVAE §5): tf.image.central_crop at 0.7 (the central 70 % of each side:
178x218 -> 126x154), then resize to 64x64 (96x96 for AVAE-S, 004 §III: `resolution: 96`).
Splits: official partition 0 = train; `test` = partition 2 (test) by default, or 1 (valid,
what 004 reports on) with `test_split: valid`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from pipeline.datainfo import DatasetCorrupt
from pipeline.datasets import register
from pipeline.datasets.base import Dataset, Plan, Split, capped, decode_all, verify_md5
from pipeline.sections import DatasetConfig

# torchvision.datasets.CelebA.file_list (torchvision 0.29): md5 of the official files
MD5 = {"img_align_celeba.zip": "00d2c5bc6d35e252742224ab0c1e8fcb",
       "list_eval_partition.txt": "d32c9cbf5e040fd4025c592c306e6668"}
PARTITION = {"train": "0", "valid": "1", "test": "2"}  # list_eval_partition.txt codes
FIX = "download it again from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Align&Cropped Images)"


def celeba_folder(root: Path) -> Path | None:
    """root or root/celeba (torchvision) holding the partition file and the images (zip or folder)."""
    for folder in (root, root / "celeba"):
        if (folder / "list_eval_partition.txt").is_file() and (
                (folder / "img_align_celeba.zip").is_file() or (folder / "img_align_celeba").is_dir()):
            return folder
    return None


def read_partition(path: Path) -> dict[str, list[str]]:
    """list_eval_partition.txt ('000001.jpg 0' lines) -> {split: [file names in order]}."""
    splits = {s: [] for s in PARTITION}
    code_to_split = {v: k for k, v in PARTITION.items()}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in code_to_split:
            raise DatasetCorrupt(f"{path}:{number}: expected '<image> <0|1|2>', got {line!r}; {FIX}")
        splits[code_to_split[parts[1]]].append(parts[0])
    return splits


class ImageReader:
    """Reads img_align_celeba/<name> from the zip or the extracted folder."""

    def __init__(self, folder: Path):
        self.zip_path = folder / "img_align_celeba.zip"
        self.dir = folder / "img_align_celeba"
        self.archive = None

    def open_zip(self) -> zipfile.ZipFile:
        try:
            if self.archive is None:
                self.archive = zipfile.ZipFile(self.zip_path)
        except (zipfile.BadZipFile, OSError) as e:
            raise DatasetCorrupt(f"{self.zip_path}: not a readable zip ({e}); {FIX}") from None
        return self.archive

    def check_listed(self, names: list[str]) -> None:
        """Every listed image is in the folder or the zip (a cheap check made before any decoding)."""
        if self.dir.is_dir():
            absent = [self.dir / n for n in names if not (self.dir / n).is_file()]
        else:
            members = set(self.open_zip().namelist())
            absent = [f"{self.zip_path}: img_align_celeba/{n}" for n in names if f"img_align_celeba/{n}" not in members]
        if absent:
            more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
            raise DatasetCorrupt(f"{absent[0]}: listed in list_eval_partition.txt but missing{more}; {FIX}")

    def read(self, name: str) -> bytes:
        if self.dir.is_dir():
            return (self.dir / name).read_bytes()
        try:
            return self.open_zip().read(f"img_align_celeba/{name}")
        except (zipfile.BadZipFile, KeyError, OSError, EOFError) as e:
            raise DatasetCorrupt(f"{self.zip_path}: cannot read {name} ({e}); {FIX}") from None


@register
class CelebA(Dataset):
    name = "celeba"
    origin = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Align&Cropped Images)"
    env = "CELEBA_DIR"
    files = "img_align_celeba.zip (or the extracted img_align_celeba/ folder) and list_eval_partition.txt"
    n_classes, resolution, crop, resample = 0, 64, "0.7", "bilinear"
    test_split, test_splits = "test", ("test", "valid")
    downloadable = True

    def present(self, root: Path) -> bool:
        return celeba_folder(root) is not None

    def fetch(self, root: Path) -> None:
        from torchvision.datasets import CelebA as TorchCelebA

        TorchCelebA(str(root), split="all", target_type=[], download=True)  # root/celeba/... (Google Drive)

    def plan(self, cfg: DatasetConfig, root: Path, name: str) -> Plan:
        pre = self.preprocessing(cfg)
        folder = celeba_folder(root)
        sources = {"list_eval_partition.txt": {"md5": verify_md5(folder / "list_eval_partition.txt",
                                                                 MD5["list_eval_partition.txt"], FIX)}}
        if (folder / "img_align_celeba").is_dir():
            sources["img_align_celeba/"] = {"md5": "extracted folder: no official checksum; files checked "
                                                   "against list_eval_partition.txt"}
        else:
            zip_path = folder / "img_align_celeba.zip"
            sources[zip_path.name] = {"md5": verify_md5(zip_path, MD5[zip_path.name], FIX)}
        partition = read_partition(folder / "list_eval_partition.txt")
        reader = ImageReader(folder)
        chosen = {split: partition[official][:capped(len(partition[official]), cap)]
                  for split, official, cap in (("train", "train", cfg.n_train), ("test", pre.test_split, cfg.n_test))}
        reader.check_listed(chosen["train"] + chosen["test"])
        splits = {}
        for split, names in chosen.items():

            def read(start: int, stop: int, names=names):
                blobs = [(reader.read(n), f"{folder}/img_align_celeba/{n}") for n in names[start:stop]]
                return decode_all(blobs, 3, pre), None

            splits[split] = Split(len(names), (3, pre.resolution, pre.resolution), read, labelled=False)
        return Plan(self.info(name, pre), splits,
                    {"sources": sources, "source_dir": str(folder), "preprocessing": vars(pre),
                     "splits": {"train": "partition 0 (train)", "test": f"partition {PARTITION[pre.test_split]} "
                                f"({pre.test_split})"}})
