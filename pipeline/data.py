"""Datasets: raw files -> a compact prepared format -> batches on the training device.

Prepared format (one folder per dataset): `<split>_x.npy` (uint8 images N x C x H x W, or
float32 points N x D for vector data), `<split>_y.npy` (int64 labels, optional) and
`meta.json` (shape, scale, classes, preprocessing, the sha256 of every array file and the
checksums of the raw source files). Training memory-maps the arrays; `load_prepared`
verifies the checksums. The declarations of the datasets (where each comes from, how it is
verified and preprocessed) live in `pipeline/datasets/`, one module each; `prepare` streams
a declaration's splits chunk by chunk into pre-allocated memory maps, so memory stays
bounded (LSUN bedroom: 3 million images) and an interrupted run resumes at its last chunk.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.datainfo import DataInfo, DatasetCorrupt, DatasetMissing, sha256_file, to_model_scale
from pipeline.datasets import DATASETS
from pipeline.datasets.base import Plan, Split
from pipeline.io import atomic_write_text, fsync_dir, fsync_file
from pipeline.sections import DatasetConfig

FORMAT_VERSION = 1


# ---------------------------------------------------------------- prepared format

PROGRESS = "progress.json"  # in the .tmp folder: examples written per split (resume marker)


def prepare(name: str, cfg: DatasetConfig, out_dir: Path) -> Path:
    """Prepare params entry `name` (declaration cfg.loader or `name`) into `out_dir`.

    Before anything is written the raw files are located and verified: checksums, file
    lists, counts and structure (an LMDB file's length, a split file's lines, empty splits).
    Images themselves are decoded only while the arrays are written, chunk by chunk, into
    `<out_dir>.tmp`, which is renamed onto `out_dir` only when complete: a failure never
    leaves anything at `out_dir`. An unreadable image met part-way stops with an error naming
    it; the finished chunks stay in `<out_dir>.tmp`, and running prepare again once the file
    is fixed resumes at the chunk that failed (it starts over when the fix changes what
    meta.json records of the sources, e.g. a replaced archive's checksum).
    """
    loader = cfg.loader or name
    if loader not in DATASETS:
        raise DatasetMissing(f"unknown dataset {loader!r}; known: {sorted(DATASETS)} (python -m pipeline data)")
    plan = DATASETS[loader].open(cfg, name)
    # what shaped the data (chunk and download do not)
    plan.meta["config"] = {k: v for k, v in asdict(cfg).items() if k not in ("chunk", "download")}
    return write_prepared(plan, Path(out_dir), cfg.chunk)


def write_prepared(plan: Plan, out_dir: Path, chunk: int) -> Path:
    """Stream `plan`'s splits into `out_dir` (memory-mapped .npy files + meta.json), resumably."""
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    for split_name, split in plan.splits.items():
        if split.n < 1:
            raise DatasetCorrupt(f"split {split_name!r} is empty: check the raw files and the n_train/n_test caps")
    fingerprint = hashlib.sha256(json.dumps(
        {"format": FORMAT_VERSION, "meta": plan.meta, "info": asdict(plan.info),
         "splits": {k: [s.n, list(s.shape), s.dtype, s.labelled] for k, s in plan.splits.items()}},
        sort_keys=True, default=str).encode()).hexdigest()
    progress = _resume_or_start(tmp, fingerprint)
    for split_name, split in plan.splits.items():
        _write_split(tmp, split_name, split, chunk, progress, fingerprint)
    checksums, sizes = {}, {}
    for split_name, split in plan.splits.items():
        for key in (f"{split_name}_x", f"{split_name}_y") if split.labelled else (f"{split_name}_x",):
            checksums[f"{key}.npy"] = sha256_file(tmp / f"{key}.npy")
            sizes[key] = split.n
    meta = {"format_version": FORMAT_VERSION, "info": asdict(plan.info), **plan.meta,
            "files": checksums, "sizes": sizes}
    for fname in checksums:  # the header numpy wrote is not covered by the memory maps' flushes
        fsync_file(tmp / fname)
    atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=2, default=str))
    (tmp / PROGRESS).unlink()
    _replace_folder(tmp, out_dir)
    return out_dir


def _replace_folder(new: Path, target: Path) -> None:
    """Rename the complete folder `new` onto `target`; an old `target` is moved aside first and
    deleted only once `new` is in place (a folder cannot be renamed onto a non-empty one)."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def _resume_or_start(tmp: Path, fingerprint: str) -> dict:
    """The progress of an interrupted run of the same plan, or a fresh empty tmp folder."""
    marker = tmp / PROGRESS
    if marker.exists():
        try:
            state = json.loads(marker.read_text())
        except ValueError:
            state = {}
        if state.get("fingerprint") == fingerprint:
            done = state.get("done", {})
            print(f"[prepare] resuming {tmp}: {done}", file=sys.stderr)
            return done
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return {}


def _write_split(tmp: Path, split_name: str, split: Split, chunk: int, progress: dict, fingerprint: str) -> None:
    """Write one split in chunks into pre-allocated memory maps, recording progress per chunk."""
    done = int(progress.get(split_name, 0))
    mode = "r+" if done else "w+"
    x = np.lib.format.open_memmap(tmp / f"{split_name}_x.npy", mode=mode, dtype=split.dtype,
                                  shape=(split.n, *split.shape))
    y = (np.lib.format.open_memmap(tmp / f"{split_name}_y.npy", mode=mode, dtype=np.int64, shape=(split.n,))
         if split.labelled else None)
    with tqdm(total=split.n, initial=done, unit="ex", desc=f"{tmp.name[:-4]}/{split_name}", disable=None,
              file=sys.stderr) as bar:
        for start in range(done, split.n, chunk):
            stop = min(start + chunk, split.n)
            try:
                xs, ys = split.read(start, stop)
            except DatasetCorrupt as e:
                raise DatasetCorrupt(f"{e}; then run prepare again: it resumes at {split_name} example {start} "
                                     f"(the finished chunks are kept in {tmp})") from None
            if xs.shape != (stop - start, *split.shape) or (y is not None and len(ys) != stop - start):
                raise DatasetCorrupt(f"{split_name}[{start}:{stop}]: got {xs.shape} images and "
                                     f"{None if ys is None else len(ys)} labels, expected {(stop - start, *split.shape)}; "
                                     "the raw files do not match their declaration")
            x[start:stop] = xs
            x.flush()
            if y is not None:
                y[start:stop] = ys
                y.flush()
            progress[split_name] = stop
            atomic_write_text(tmp / PROGRESS, json.dumps({"fingerprint": fingerprint, "done": progress}))
            bar.update(stop - start)
    del x, y


@dataclass
class Prepared:
    """A prepared dataset: memory-mapped arrays and their DataInfo."""

    info: DataInfo
    arrays: dict[str, np.ndarray]
    meta: dict

    def x(self, split: str) -> np.ndarray:
        return self.arrays[f"{split}_x"]

    def y(self, split: str) -> np.ndarray | None:
        return self.arrays.get(f"{split}_y")


def require_prepared(folder: str | Path, dataset: str = "<name>", label: str | None = None) -> None:
    """Raise DatasetMissing naming the fix unless `folder` (called `label` in the message) holds a
    prepared dataset, i.e. its meta.json: stages check this before doing anything."""
    folder = Path(folder)
    label = label or str(folder)
    fix = f"prepare it first: `dvc repro prepare@{dataset}` or `python -m pipeline prepare {dataset} --out {folder}`"
    if not folder.is_dir():
        raise DatasetMissing(f"{label}: no such folder; {fix}")
    if not (folder / "meta.json").is_file():
        raise DatasetMissing(f"{label} holds no prepared dataset (no meta.json); {fix}")


def load_prepared(folder: str | Path, verify: bool = True) -> Prepared:
    """Open a prepared folder (memory-mapped), verifying its checksums."""
    folder = Path(folder)
    require_prepared(folder)
    meta_path = folder / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as e:
        raise DatasetCorrupt(f"{meta_path}: not valid JSON ({e}); re-run `dvc repro prepare` "
                             "(or `dvc checkout`) to restore it") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise DatasetCorrupt(f"{folder}: prepared format {meta.get('format_version')} != {FORMAT_VERSION}; "
                             "re-run `dvc repro prepare`")
    arrays = {}
    for fname, digest in meta["files"].items():
        path = folder / fname
        if not path.exists():
            raise DatasetCorrupt(f"{path}: listed in meta.json but absent; re-run `dvc repro prepare` "
                                 "(or `dvc checkout`) to restore it")
        if verify and sha256_file(path) != digest:
            raise DatasetCorrupt(f"{path}: checksum differs from meta.json; re-run `dvc repro prepare` "
                                 "(or `dvc checkout`) to restore it")
        arrays[fname.removesuffix(".npy")] = np.load(path, mmap_mode="r")
    return Prepared(DataInfo.from_dict(meta["info"]), arrays, meta)


class BatchSampler:
    """Batches drawn from a split held whole on the device, reshuffled every epoch.

    Its state (epoch permutation and position, generator state) goes into checkpoints, so a
    resumed run sees the same batches as an uninterrupted one.
    """

    def __init__(self, data: np.ndarray, info: DataInfo, batch_size: int, device: torch.device, seed: int):
        self.data = torch.from_numpy(np.array(data)).to(device)  # a private copy of the memory map
        self.info, self.batch_size, self.device = info, batch_size, device
        if len(self.data) < batch_size:
            raise ValueError(f"split has {len(self.data)} examples, fewer than batch_size {batch_size}")
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(self.data), generator=self.generator)
        self.position = 0

    def next(self) -> torch.Tensor:
        if self.position + self.batch_size > len(self.order):
            self.order = torch.randperm(len(self.data), generator=self.generator)
            self.position = 0
        idx = self.order[self.position:self.position + self.batch_size].to(self.device)
        self.position += self.batch_size
        return to_model_scale(self.data[idx], self.info)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.position = state["order"], state["position"]


def data_report(configured: dict[str, DatasetConfig], prepared_root: Path) -> str:
    """One block per dataset (params entries, then registered datasets params do not use):
    whether its raw files are present, where they are looked for, its prepared size."""
    entries = dict(configured)
    for name in DATASETS:
        if name not in entries and name not in {c.loader for c in configured.values()}:
            entries[name] = DatasetConfig()
    lines = []
    for name, cfg in entries.items():
        dataset = DATASETS[cfg.loader or name]
        root = dataset.locate(cfg)
        label = f"{name}" + (f" (loader {dataset.name})" if dataset.name != name else "")
        label += "" if name in configured else " [not in params]"
        partial = None if root else dataset.incomplete(cfg)
        state = f"present in {root}" if root else f"INCOMPLETE in {partial[0]}" if partial else "ABSENT"
        lines.append(f"{label}: raw {state}")
        if partial:
            lines.append("  missing: " + ", ".join(str(p) for p in partial[1]))
        lines.append("  looked in: " + "; ".join(f"{kind} {path}" for kind, path in dataset.candidates(cfg)))
        if root is None and cfg.download and dataset.downloadable:
            lines.append(f"  download: enabled (torchvision, into {dataset.candidates(cfg)[0][1]} on prepare)")
        elif root is None:
            lines.append(f"  to get it: {dataset.instructions()}")
        prepared = Path(prepared_root) / name
        if (prepared / "meta.json").exists():
            meta = json.loads((prepared / "meta.json").read_text())
            size = sum((prepared / f).stat().st_size for f in meta["files"] if (prepared / f).exists())
            lines.append(f"  prepared: {prepared} ({size / 2**20:.1f} MiB, {meta['sizes']})")
        else:
            how = f"dvc repro prepare@{name}" if name in configured else f"add datasets.{name} to params.yaml"
            lines.append(f"  prepared: no ({prepared} absent; {how})")
    return "\n".join(lines)
