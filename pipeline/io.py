"""Atomic file writes: write beside the target, fsync, then rename (never a half-written file).

A crash or a full disk during a write leaves the previous version of the target intact: the
new bytes go to a temporary file in the same folder, which is flushed to disk (fsync) before
it is renamed onto the target, and the folder is fsynced after so the rename itself is durable.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

_UMASK = os.umask(0)  # read once at import (os.umask can only be read by setting it)
os.umask(_UMASK)


class UnsafeOrCorruptFile(ValueError):
    """A file that cannot be loaded as plain tensors and containers (damaged, or needing code)."""


def safe_torch_load(path: str | Path, fix: str, map_location: str | torch.device = "cpu",
                    data: bytes | None = None) -> Any:
    """torch.load with weights_only=True: tensors and plain containers only, no code runs.
    A truncated, corrupt or code-carrying file raises UnsafeOrCorruptFile naming it and `fix`.
    `data`: the file's bytes when the caller has already read (and verified) them."""
    try:
        return torch.load(path if data is None else io.BytesIO(data), map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # zip/pickle errors of every kind, and the weights-only refusal
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UnsafeOrCorruptFile(f"{path} cannot be loaded safely ({type(e).__name__}: {reason}): it is "
                                  f"truncated, corrupt, or holds more than tensors and plain values; {fix}") from None


def fsync_file(path: str | Path) -> None:
    """Flush a written file's data to disk (the rename that follows must not outrun it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: str | Path) -> None:
    """Make renames in `folder` durable; a no-op where folders cannot be opened (Windows)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp_path), fsync it, then rename tmp_path onto `path` atomically.

    `write` must write to the path it is given (whose suffix is `.tmp`: writers that infer a
    format from the suffix need it passed explicitly). On any error the temporary file is
    removed, the error propagates and `path` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes it 0600; outputs get the usual permissions
    os.close(fd)
    try:
        write(Path(tmp))
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """torch.save atomically, through a file object: given a path, torch names the archive's
    root folder after the (random) temporary file, so equal objects would differ byte-wise."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    return atomic_write(path, write)


def atomic_savez(path: str | Path, **arrays: Any) -> Path:
    """np.savez atomically, through a file numpy closes before the rename (given a name, it would add .npz)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, write)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
