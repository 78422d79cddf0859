"""LSUN bedroom (AVAE T1): the official LMDB export, resized to 64x64, streamed.

Source: a folder with `bedroom_train_lmdb/` and `bedroom_val_lmdb/` (the unzipped official
downloads, the layout torchvision.datasets.LSUN reads). Neither LSUN nor torchvision
publishes checksums for them, so verification is structural: each database opens, its
data.mdb is as long as its header says (a truncated copy is refused before any read), it
holds the official number of entries (COUNTS), and every image decodes (checked as it is
read). Preprocessing: centre square crop (the short side; LSUN images are 256 px on it) then
resize to 64x64. `test` is the official validation set (300 images; AVAE: "the test or
validation splits"). The 3 million training images are read one LMDB cursor step at a time,
never all at once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.datainfo import DatasetCorrupt
from pipeline.datasets import register
from pipeline.datasets.base import Dataset, Plan, Split, absent_files, capped, decode_all
from pipeline.sections import DatasetConfig

COUNTS = {"train": 3_033_042, "val": 300}  # official bedroom entries (LSUN release, fyu/lsun)
FIX = ("download and unzip it again (python download.py -c bedroom, https://github.com/fyu/lsun); "
       "`pip install lmdb` if the package is missing")


def check_complete(data_file: Path, needed: int) -> None:
    """DatasetCorrupt unless data_file is at least `needed` bytes long. An LMDB database's meta
    page (at the file's start) records its last used page: a file cut shorter (an interrupted
    copy or unzip) still opens and reports its entry count, but reading a page past the end of
    the memory-mapped file kills the process with SIGBUS."""
    size = data_file.stat().st_size
    if size < needed:
        raise DatasetCorrupt(f"{data_file}: truncated ({size} bytes; its LMDB header says the database spans "
                             f"{needed} bytes), an interrupted copy or unzip: copy it again or unzip "
                             f"{data_file.parent.name}.zip again; if the zip is bad too, {FIX}")


class LmdbReader:
    """Sequential chunk reader over one LMDB database (key order), repositioned by skipping keys."""

    def __init__(self, path: Path, pre, what: str):
        import lmdb

        self.path, self.pre, self.what = path, pre, what
        try:
            self.env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False, max_readers=1)
            stat = self.env.stat()
            last_page = self.env.info()["last_pgno"]
        except lmdb.Error as e:
            raise DatasetCorrupt(f"{path}: not a readable LMDB database ({e}); {FIX}") from None
        check_complete(path / "data.mdb", (last_page + 1) * stat["psize"])
        self.entries = stat["entries"]
        self.txn = self.cursor = None
        self.position = -1

    def _seek(self, start: int) -> None:
        """Place the cursor on entry number `start` (skips keys without reading values)."""
        self.txn = self.env.begin(write=False)
        self.cursor = self.txn.cursor()
        self.cursor.first()
        for _ in range(start):
            self.cursor.next()
        self.position = start

    def read(self, start: int, stop: int) -> tuple[np.ndarray, None]:
        import lmdb

        if start != self.position:
            self._seek(start)
        blobs = []
        try:
            for _ in range(stop - start):
                key, value = self.cursor.item()
                blobs.append((bytes(value), f"{self.path} entry {key.decode(errors='replace')}"))
                self.cursor.next()
        except lmdb.Error as e:
            where = self.position + len(blobs)
            raise DatasetCorrupt(f"{self.path}: read error at entry {where} ({e}); {FIX}") from None
        self.position = stop
        return decode_all(blobs, 3, self.pre), None


@register
class LSUNBedroom(Dataset):
    name = "lsun_bedroom"
    origin = "https://github.com/fyu/lsun (bedroom_train_lmdb.zip, bedroom_val_lmdb.zip)"
    env = "LSUN_DIR"
    files = "the unzipped bedroom_train_lmdb/ and bedroom_val_lmdb/ folders"
    resolution, crop, resample = 64, "square", "bilinear"
    test_split, test_splits = "val", ("val",)

    def present(self, root: Path) -> bool:
        return all((root / f"bedroom_{s}_lmdb" / "data.mdb").is_file() for s in COUNTS)

    def missing(self, root: Path) -> list[Path]:
        return absent_files([root], [f"bedroom_{s}_lmdb/data.mdb" for s in COUNTS])

    def plan(self, cfg: DatasetConfig, root: Path, name: str) -> Plan:
        pre = self.preprocessing(cfg)
        splits, sources = {}, {}
        for split, official, cap in (("train", "train", cfg.n_train), ("test", "val", cfg.n_test)):
            path = root / f"bedroom_{official}_lmdb"
            reader = LmdbReader(path, pre, split)
            if reader.entries != COUNTS[official]:
                raise DatasetCorrupt(f"{path}: {reader.entries} entries, the official export has "
                                     f"{COUNTS[official]} (incomplete download or unzip?); {FIX}")
            sources[path.name] = {"entries": reader.entries, "md5": "none published; entry count checked"}
            splits[split] = Split(capped(reader.entries, cap), (3, pre.resolution, pre.resolution), reader.read,
                                  labelled=False)
        return Plan(self.info(name, pre), splits, {"sources": sources, "preprocessing": vars(pre)})
