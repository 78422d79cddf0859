"""What a dataset declaration is, and the helpers the declarations share.

A declaration (one per module in this package) says where a dataset comes from (its
official distribution, the environment variable and params key that point at a local copy,
torchvision's downloader if it has one), how its raw files are verified, which official
split becomes `test` (the split reconstruction metrics use) and how images are preprocessed.
`Dataset.open` returns a `Plan`: splits that are read in chunks, so `pipeline.data.prepare`
streams them into memory-mapped arrays without holding a split in memory.
"""

from __future__ import annotations

import abc
import gzip
import hashlib
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np
from PIL import Image

from pipeline.datainfo import DataInfo, DatasetCorrupt, DatasetMissing, file_digest
from pipeline.schema import require
from pipeline.sections import DatasetConfig

RAW_ROOT = Path("data/raw")  # default location of raw files: data/raw/<dataset> (relative to the repository)

RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
            "lanczos": Image.LANCZOS, "box": Image.BOX}


@dataclass(frozen=True)
class Preprocessing:
    """Resolved image preprocessing: output side, crop rule, resize filter, stored test split."""

    resolution: int
    crop: str
    resample: str
    test_split: str


@dataclass
class Split:
    """One split to write: `n` examples of `shape`; read(start, stop) -> (x, y or None)."""

    n: int
    shape: tuple[int, ...]
    read: Callable[[int, int], tuple[np.ndarray, np.ndarray | None]]
    labelled: bool = True
    dtype: str = "uint8"


@dataclass(frozen=True)
class Expected:
    """What preparing an entry will give, told before it is prepared: kind ('image' or 'vector'),
    n_classes (0: unlabelled; None: cannot be told yet), where that was read (for messages), and
    image_folder's labels record (as meta.json will hold it)."""

    kind: str
    n_classes: int | None
    known_from: str
    labels: dict | None = None


@dataclass
class Plan:
    """Everything `prepare` needs: the DataInfo, the splits and what goes into meta.json."""

    info: DataInfo
    splits: dict[str, Split]
    meta: dict = field(default_factory=dict)


class Dataset(abc.ABC):
    """A dataset declaration. Subclasses set the class attributes and implement
    `present` (are the raw files in this folder?) and `plan` (verify them, return the splits),
    and, for a fixed list of raw files, `missing` (which of them a partial copy lacks).

    name: registry key; origin: the official distribution; env: environment variable with a
    local copy; files: what the raw copy consists of (for messages); channels / n_classes;
    resolution / crop / resample / test_split: the papers' preprocessing (params may
    override); downloadable: torchvision has a downloader for it.
    """

    name: ClassVar[str]
    origin: ClassVar[str]
    env: ClassVar[str]
    files: ClassVar[str]
    channels: ClassVar[int] = 3
    n_classes: ClassVar[int] = 0
    resolution: ClassVar[int] = 32
    crop: ClassVar[str] = "none"
    resample: ClassVar[str] = "bilinear"
    test_split: ClassVar[str] = "test"
    test_splits: ClassVar[tuple[str, ...]] = ("test",)  # official splits allowed as `test`
    downloadable: ClassVar[bool] = False

    # -------------------------------------------------------------- locating raw files

    def candidates(self, cfg: DatasetConfig) -> list[tuple[str, Path]]:
        """Where raw files are looked for: the params source if set (only there), else $ENV if
        set (only there), else the default folders (data/raw/<name>, then any declared)."""
        if cfg.source:
            return [("params source", Path(cfg.source).expanduser())]
        if os.environ.get(self.env):
            return [(f"${self.env}", Path(os.environ[self.env]).expanduser())]
        return [("default", root) for root in self.default_roots()]

    def default_roots(self) -> list[Path]:
        return [RAW_ROOT / self.name]

    def locate(self, cfg: DatasetConfig) -> Path | None:
        """The first candidate folder holding the raw files (None when none does)."""
        for _, root in self.candidates(cfg):
            if self.present(root):
                return root
        return None

    @abc.abstractmethod
    def present(self, root: Path) -> bool:
        """True when `root` holds this dataset's raw files (in an accepted layout)."""

    @abc.abstractmethod
    def plan(self, cfg: DatasetConfig, root: Path, name: str) -> Plan:
        """Verify the raw files under `root` and return the splits to write."""

    def missing(self, root: Path) -> list[Path]:
        """The declared raw files absent from `root` when it holds only part of them (an
        interrupted copy or extraction), else [] (declarations with a fixed file list override this)."""
        return []

    def incomplete(self, cfg: DatasetConfig) -> tuple[Path, list[Path]] | None:
        """The first candidate folder holding part of the raw files, with the files it lacks."""
        for _, root in self.candidates(cfg):
            absent = self.missing(root)
            if absent:
                return root, absent
        return None

    def instructions(self) -> str:
        how = ("or set `download: true` under datasets.<name> in params.yaml on a connected machine "
               "(torchvision's downloader)" if self.downloadable else "there is no downloader for it")
        return (f"Get {self.files} from {self.origin} and point datasets.<name>.source in params.yaml "
                f"(or ${self.env}) at the folder, or put it in {self.default_roots()[0]}; {how}.")

    def fetch(self, root: Path) -> None:
        """Download the raw files into `root` with torchvision (declarations that can override this)."""
        raise DatasetMissing(f"{self.name}: no downloader; {self.instructions()}")

    def open(self, cfg: DatasetConfig, name: str) -> Plan:
        """Locate (or, when allowed, download) the raw files, verify them and plan the splits."""
        root = self.locate(cfg)
        if root is None and cfg.download and self.downloadable:
            root = self.candidates(cfg)[0][1]
            try:
                self.fetch(root)
            except (OSError, RuntimeError, ValueError) as e:  # URLError is an OSError; torchvision raises RuntimeError
                raise DatasetMissing(f"{self.name}: download into {root} failed ({type(e).__name__}: {e}); "
                                     f"{self.instructions()}") from None
            if not self.present(root):
                raise DatasetMissing(f"{self.name}: the download into {root} did not produce {self.files}")
        partial = self.incomplete(cfg) if root is None else None
        if partial:
            folder, absent = partial
            raise DatasetMissing(f"{self.name}: {folder} holds only part of {self.files}: "
                                 f"{', '.join(str(p) for p in absent)} missing (an interrupted copy or "
                                 f"extraction?); re-extract the archive or copy the missing files there "
                                 f"(official source: {self.origin})")
        if root is None:
            where = ", ".join(f"{label} {path}" for label, path in self.candidates(cfg))
            raise DatasetMissing(f"{self.name}: raw files not found (looked in: {where}). {self.instructions()}")
        plan = self.plan(cfg, root, name)
        plan.meta.setdefault("source_dir", str(root))
        plan.meta["dataset"] = self.name
        return plan

    # -------------------------------------------------------------- preprocessing

    def preprocessing(self, cfg: DatasetConfig) -> Preprocessing:
        """The declared preprocessing with params overrides applied."""
        test_split = cfg.test_split or self.test_split
        require(test_split in self.test_splits, f"datasets.*.test_split (dataset {self.name})",
                f"= {test_split!r}; {self.name} offers {list(self.test_splits)}")
        return Preprocessing(cfg.resolution or self.resolution, cfg.crop or self.crop,
                             cfg.resample or self.resample, test_split)

    def expected(self, cfg: DatasetConfig, name: str) -> Expected:
        """The kind of data and number of classes preparing this entry will give (declared here;
        image_folder reads its folder). Reads no image."""
        return Expected("image", self.n_classes, f"the {self.name} declaration")

    def info(self, name: str, pre: Preprocessing) -> DataInfo:
        return DataInfo(name, "image", (self.channels, pre.resolution, pre.resolution), "[-1,1]", self.n_classes)


# ------------------------------------------------------------------ image operations


def crop_box(width: int, height: int, crop: str) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the crop rule applied to a width x height image.

    'none': the whole image; 'square': the largest centred square; a fraction f: the
    central f of each side, computed as tf.image.central_crop does (start = int((s - s·f)/2),
    size = s - 2·start), which is what AVAE's "center-cropped at 70%" runs on TF datasets.
    """
    if crop == "none":
        return 0, 0, width, height
    if crop == "square":
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return left, top, left + side, top + side
    fraction = float(crop)
    left, top = int((width - width * fraction) / 2), int((height - height * fraction) / 2)
    return left, top, width - left, height - top


def to_8bit(image: Image.Image) -> Image.Image:
    """16-bit greyscale (PIL modes I;16, I;16B, I;16L; mode I, as older Pillow opens 16-bit PNGs)
    -> 8-bit L by keeping the high byte, v >> 8; other modes pass through.

    v >> 8 is how PIL itself reduces 16-bit RGB, RGBA and grey+alpha PNGs when it decodes
    them, so a 16-bit grey image and a 16-bit colour image of the same values give the same
    8-bit values; like rounding v / 257 it inverts the standard 8 -> 16 bit widening v · 257.
    (`convert("L")` would clip every value above 255 to white.)
    """
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)  # asarray honours the byte order
        return Image.fromarray((values >> 8).astype(np.uint8), "L")
    return image


def image_to_array(image: Image.Image, channels: int, pre: Preprocessing) -> np.ndarray:
    """PIL image -> uint8 C x H x W: to 8 bits (to_8bit), convert, crop (crop_box), resize to
    resolution (antialiased PIL filter)."""
    image = to_8bit(image).convert("RGB" if channels == 3 else "L")
    box = crop_box(*image.size, pre.crop)
    if box != (0, 0, *image.size):
        image = image.crop(box)
    if image.size != (pre.resolution, pre.resolution):
        image = image.resize((pre.resolution, pre.resolution), RESAMPLE[pre.resample])
    array = np.asarray(image, dtype=np.uint8)
    return array.transpose(2, 0, 1) if channels == 3 else array[None]


def resize_batch(x: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """uint8 N x C x H x W -> the preprocessing's resolution (a no-op when sizes and crop agree)."""
    if x.shape[-1] == pre.resolution and x.shape[-2] == pre.resolution and pre.crop in ("none", "square"):
        return x
    channels = x.shape[1]
    images = (Image.fromarray(a.transpose(1, 2, 0) if channels == 3 else a[0]) for a in x)
    return np.stack([image_to_array(im, channels, pre) for im in images])


def decode_all(blobs: list[tuple[bytes, str]], channels: int, pre: Preprocessing) -> np.ndarray:
    """Encoded images (bytes, name for messages) -> N x C x R x R uint8, decoded on a few threads
    (PIL releases the GIL while decoding and resizing)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(item: tuple[bytes, str]) -> np.ndarray:
        return image_to_array(decode_image(*item), channels, pre)

    if len(blobs) < 16:
        return np.stack([one(item) for item in blobs])
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        return np.stack(list(pool.map(one, blobs)))


def decode_image(blob: bytes, what: str) -> Image.Image:
    """Decode encoded image bytes, naming `what` when they are not a readable image."""
    import io

    try:
        image = Image.open(io.BytesIO(blob))
        image.load()
    except Exception as e:  # PIL raises several types for bad data
        raise DatasetCorrupt(f"{what}: not a readable image ({e}); replace it with a good copy "
                             "(re-extract or re-download it)") from None
    return image


# ------------------------------------------------------------------ IDX files (MNIST family)

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


# ------------------------------------------------------------------ verification


def md5_file(path: Path) -> str:
    """md5 of a raw file: the checksum the official distributions (and torchvision) publish."""
    return file_digest(path, "md5")


def verify_md5(path: Path, expected: str, fix: str) -> str:
    """Check `path` against its official md5 (as torchvision lists it); DatasetCorrupt on mismatch."""
    got = md5_file(path)
    if got != expected:
        raise DatasetCorrupt(f"{path}: checksum mismatch (md5 {got}, the official file has {expected}; "
                             f"truncated or altered download?). Delete it and {fix}")
    return got


def check_counts(images: np.ndarray, images_path: Path, labels: np.ndarray, labels_path: Path, fix: str) -> None:
    """DatasetCorrupt naming both files unless an image file and its label file hold as many entries."""
    if len(images) != len(labels):
        raise DatasetCorrupt(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
                             f"labels: they must come from the same release; {fix}")


def absent_files(folders: list[Path], names: list[str]) -> list[Path]:
    """For the first folder holding some but not all of `names`: the absent ones (else [])."""
    for folder in folders:
        absent = [folder / name for name in names if not (folder / name).exists()]
        if 0 < len(absent) < len(names):
            return absent
    return []


def capped(n: int, cap: int) -> int:
    """The number of examples kept from a split of n (cap 0 = all)."""
    return min(n, cap) if cap else n


def array_split(x: np.ndarray, y: np.ndarray | None, pre: Preprocessing) -> Split:
    """A Split over in-memory arrays (already small: CIFAR, SVHN, MNIST), resized per chunk."""
    def read(start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        return resize_batch(np.asarray(x[start:stop]), pre), None if y is None else np.asarray(y[start:stop])

    return Split(len(x), (x.shape[1], pre.resolution, pre.resolution), read, labelled=y is not None)
