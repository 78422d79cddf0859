"""Shared fixtures: tiny configs, generated IDX files and prepared datasets."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import data as datamod
from pipeline.config import parse_params
from pipeline.datasets import fashion_mnist
from pipeline.sections import DatasetConfig, NetworkConfig

ROOT = Path(__file__).resolve().parents[1]


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> str:
    """Write `array` (uint8) as an IDX file; returns the sha256 of the uncompressed bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    blob = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(blob)
    else:
        path.write_bytes(blob)
    return hashlib.sha256(blob).hexdigest()


@pytest.fixture
def idx_folder(tmp_path, monkeypatch):
    """A Fashion-MNIST-shaped IDX folder (96 train, 32 test images) with its checksums pinned."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "fmnist_raw"
    folder.mkdir()
    arrays = {"train_x": rng.integers(0, 256, (96, 28, 28)), "train_y": rng.integers(0, 10, 96),
              "test_x": rng.integers(0, 256, (32, 28, 28)), "test_y": rng.integers(0, 10, 32)}
    pinned = {}
    for key, (stem, _) in fashion_mnist.FASHION_MNIST_FILES.items():
        pinned[key] = (stem, write_idx(folder / f"{stem}.gz", arrays[key]))
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_FILES", pinned)
    return folder, arrays


@pytest.fixture
def toy_prepared(tmp_path):
    """toy2d prepared with 2,000 training points."""
    return datamod.load_prepared(datamod.prepare("toy2d", DatasetConfig(n_train=2000, n_test=500, seed=0),
                                                 tmp_path / "toy2d"))


@pytest.fixture
def image_prepared(idx_folder, tmp_path):
    """The IDX fixture prepared (1 x 32 x 32 images)."""
    folder, _ = idx_folder
    return datamod.load_prepared(datamod.prepare("fashion_mnist", DatasetConfig(source=str(folder)),
                                                 tmp_path / "fmnist"))


def bars_idx(folder: Path, n_train: int = 512, n_test: int = 128, seed: int = 0) -> dict:
    """A Fashion-MNIST-shaped IDX folder of structured images: one bright bar (horizontal or
    vertical, random position) on a dark background, so there is something to learn. Returns
    the pins (file stem, sha256) to patch into the Fashion-MNIST declaration."""
    rng = np.random.default_rng(seed)

    def images(n):
        x = np.zeros((n, 28, 28), dtype=np.uint8)
        for k in range(n):
            p = rng.integers(4, 22)
            if rng.random() < 0.5:
                x[k, p:p + 4, 4:24] = 255
            else:
                x[k, 4:24, p:p + 4] = 255
        return x

    arrays = {"train_x": images(n_train), "train_y": rng.integers(0, 10, n_train),
              "test_x": images(n_test), "test_y": rng.integers(0, 10, n_test)}
    folder.mkdir(parents=True, exist_ok=True)
    return {key: (stem, write_idx(folder / f"{stem}.gz", arrays[key]))
            for key, (stem, _) in fashion_mnist.FASHION_MNIST_FILES.items()}


@pytest.fixture
def bars_dir(tmp_path, monkeypatch):
    """The bars images prepared (512 train, 128 test, 1 x 32 x 32) under tmp_path/bars."""
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_FILES", bars_idx(tmp_path / "bars_raw"))
    return datamod.prepare("fashion_mnist", DatasetConfig(source=str(tmp_path / "bars_raw")), tmp_path / "bars")


TINY_NET = NetworkConfig(width=4, latent_dim=8, mlp_hidden=32)


def tiny_params(**overrides) -> dict:
    """A params mapping for tests: toy2d + fashion_mnist, tiny networks and runs."""
    raw = {
        "datasets": {"toy2d": {"n_train": 2000, "n_test": 500}, "fashion_mnist": {}},
        "grid": {"datasets": ["toy2d"], "seeds": [0], "pretrain": ["vae"], "baselines": ["gan"],
                 "stage2": [{"model": "avae_b", "export": "vae"}], "evaluate": ["vae", "gan", "avae_b"], "toy": []},
        "networks": {"width": 4, "latent_dim": 1, "mlp_hidden": 32},
        "train": {"iterations": 40, "batch_size": 32, "log_every": 10, "checkpoint_every": 20, "device": "cpu"},
        "evaluate": {"n_samples": 200, "batch_size": 100, "grid_rows": 4},
        "classifier": {"epochs": 1, "batch_size": 32},
        "models": {"vae": {"method": "vae", "beta": 1.0, "lr": 0.001}, "gan": {"method": "gan"},
                   "avae_b": {"method": "avae", "latent_loss": "b"}},
    }
    for key, value in overrides.items():
        raw[key] = value
    return raw


@pytest.fixture
def params():
    return parse_params(tiny_params())


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


def assert_each_phase_moves_only_its_modules(method, x: torch.Tensor) -> None:
    """One optimiser step per phase, with requires_grad set as the training loop sets it: the
    loss is a finite scalar, and the step moves some of the phase's own parameters and no other."""
    for phase in method.phases():
        own = {id(p) for m in phase.modules for p in m.parameters()}
        for p in method.parameters():
            p.requires_grad_(id(p) in own)  # as the training loop does
        before = {n: p.detach().clone() for n, p in method.named_parameters()}
        optimizer = torch.optim.Adam([p for m in phase.modules for p in m.parameters()], lr=1e-2)
        terms = phase.loss(x)
        assert "loss" in terms and terms["loss"].ndim == 0 and torch.isfinite(terms["loss"])
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        moved = {n for n, p in method.named_parameters() if not torch.equal(before[n], p)}
        own_names = {n for n, p in method.named_parameters() if id(p) in own}
        assert moved and moved <= own_names, f"{phase.name} moved {moved - own_names}"
