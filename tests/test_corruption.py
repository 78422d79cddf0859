"""Corrupt artefacts are refused on load with a message that names the file and the fix:
prepared-data arrays and meta.json (load_prepared) and the frozen VAE export (load_vae_export)."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import data as datamod
from pipeline.datainfo import DataInfo, DatasetCorrupt
from pipeline.export import ExportError, export_vae, load_vae_export
from pipeline.methods.vae import VAE, VaeConfig
from tests.conftest import TINY_NET


def truncate(path: Path) -> None:
    """Keep the first half of the file (a copy or a write cut short)."""
    blob = path.read_bytes()
    path.write_bytes(blob[:len(blob) // 2])


def flip_bit(path: Path, offset: int | None = None) -> None:
    """Flip one bit at `offset` (default: the middle of the file, past any header)."""
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2 if offset is None else offset] ^= 0x10
    path.write_bytes(bytes(blob))


# ---------------------------------------------------------------- prepared data


@pytest.mark.parametrize("corrupt", [truncate, flip_bit], ids=["truncated", "bit-flipped"])
@pytest.mark.parametrize("fname", ["train_x.npy", "test_y.npy"])
def test_corrupt_prepared_array_is_refused_naming_file_and_fix(image_prepared, tmp_path, corrupt, fname):
    path = tmp_path / "fmnist" / fname
    corrupt(path)
    with pytest.raises(DatasetCorrupt) as raised:
        datamod.load_prepared(path.parent)
    message = str(raised.value)
    assert str(path) in message and "checksum differs" in message and "dvc repro prepare" in message


def test_truncated_prepared_meta_is_refused_naming_file_and_fix(image_prepared, tmp_path):
    meta = tmp_path / "fmnist" / "meta.json"
    truncate(meta)
    with pytest.raises(DatasetCorrupt, match=re.escape(f"{meta}: not valid JSON") + ".*dvc repro prepare"):
        datamod.load_prepared(meta.parent)


def test_missing_prepared_array_is_refused_naming_file_and_fix(image_prepared, tmp_path):
    path = tmp_path / "fmnist" / "train_y.npy"
    path.unlink()
    with pytest.raises(DatasetCorrupt, match=re.escape(f"{path}: listed in meta.json but absent") + ".*dvc repro prepare"):
        datamod.load_prepared(path.parent)


# ---------------------------------------------------------------- VAE export

INFO = DataInfo("fashion_mnist", "image", (1, 32, 32), "[-1,1]", 10)


@pytest.fixture
def export_path(tmp_path) -> Path:
    vae = VAE(VaeConfig(), INFO, TINY_NET)
    export_vae(vae, tmp_path / "export.pt", {"seed": 0})
    return tmp_path / "export.pt"


def weight_offset(path: Path) -> int:
    """Where the bytes of the largest stored tensor lie in the file (a flip there changes a weight)."""
    state = torch.load(path, weights_only=False)["state_dict"]
    biggest = max(state.values(), key=lambda t: t.numel())
    offset = path.read_bytes().find(biggest.numpy().tobytes())
    assert offset > 0, "tensor bytes not found verbatim in the export (compressed?)"
    return offset + biggest.numel() * biggest.element_size() // 2


def test_bit_flipped_export_weights_are_refused_naming_file_and_fix(export_path):
    flip_bit(export_path, weight_offset(export_path))
    with pytest.raises(ExportError) as raised:
        load_vae_export(export_path)
    message = str(raised.value)
    assert str(export_path) in message and "content hash" in message and "dvc repro pretrain_vae" in message


def test_truncated_export_is_refused_naming_file_and_fix(export_path):
    truncate(export_path)
    with pytest.raises(ExportError) as raised:
        load_vae_export(export_path)
    assert str(export_path) in str(raised.value) and "dvc repro pretrain_vae" in str(raised.value)


EXPORT_FLIPS = 200  # random single-bit flips tried over the whole export file (quoted in the closing note)


def test_a_bit_flip_anywhere_in_an_export_is_refused_or_harmless(export_path):
    """Every flip either raises ExportError (naming the file) or lands where it changes nothing
    loaded (zip padding / unused records): the weights then still match their content hash."""
    pristine = export_path.read_bytes()
    reference = load_vae_export(export_path)
    rng = np.random.default_rng(0)
    refused = 0
    for offset in rng.integers(0, len(pristine), EXPORT_FLIPS):
        blob = bytearray(pristine)
        blob[offset] ^= 1 << int(rng.integers(0, 8))
        export_path.write_bytes(bytes(blob))
        try:
            loaded = load_vae_export(export_path)
            assert loaded.arch() == reference.arch() and loaded.content_hash == reference.content_hash
        except ExportError as e:
            assert str(export_path) in str(e)
            refused += 1
    print(f"{refused} of {EXPORT_FLIPS} bit flips refused, the rest changed nothing loaded")
    assert refused >= EXPORT_FLIPS // 2
