"""prepare on generated IDX fixtures; verification of raw and prepared files."""

import gzip
import json

import numpy as np
import pytest
import torch

from pipeline import data as datamod
from pipeline.datainfo import DatasetCorrupt, DatasetMissing, to_model_scale
from pipeline.datasets.base import read_idx
from pipeline.sections import DatasetConfig
from tests.conftest import write_idx


def test_read_idx_roundtrip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    digest = write_idx(tmp_path / "a.gz", array)
    got, got_digest = read_idx(tmp_path / "a.gz")
    assert np.array_equal(got, array) and got_digest == digest
    write_idx(tmp_path / "b", array, compress=False)
    assert np.array_equal(read_idx(tmp_path / "b")[0], array)


def test_prepare_pads_to_32_and_keeps_the_official_split(idx_folder, tmp_path):
    folder, arrays = idx_folder
    out = datamod.prepare("fashion_mnist", DatasetConfig(source=str(folder)), tmp_path / "prep")
    prepared = datamod.load_prepared(out)
    x = prepared.x("train")
    assert x.shape == (96, 1, 32, 32) and x.dtype == np.uint8
    assert np.array_equal(x[:, 0, 2:30, 2:30], arrays["train_x"])  # content in the centre
    assert x[:, :, :2].max() == 0 and x[:, :, :, 30:].max() == 0  # zero padding
    assert np.array_equal(prepared.y("test"), arrays["test_y"])
    assert prepared.x("test").shape == (32, 1, 32, 32)
    assert isinstance(x, np.memmap)
    meta = json.loads((out / "meta.json").read_text())
    assert set(meta["files"]) == {"train_x.npy", "train_y.npy", "test_x.npy", "test_y.npy"}
    assert prepared.info.shape == (1, 32, 32) and prepared.info.n_classes == 10


def test_model_scale_is_minus_one_to_one(image_prepared):
    batch = datamod.BatchSampler(image_prepared.x("train"), image_prepared.info, 16, torch.device("cpu"), 0).next()
    assert batch.min() >= -1 and batch.max() <= 1 and batch.shape == (16, 1, 32, 32)
    assert torch.equal(to_model_scale(torch.tensor([[0, 255]], dtype=torch.uint8), image_prepared.info),
                       torch.tensor([[-1.0, 1.0]]))


def test_missing_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetMissing, match="apt-get install -y dataset-fashion-mnist"):
        datamod.prepare("fashion_mnist", DatasetConfig(source=str(tmp_path / "nowhere")), tmp_path / "out")


def test_wrong_checksum_is_refused_and_nothing_is_written(idx_folder, tmp_path):
    folder, arrays = idx_folder
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", (arrays["test_y"] + 1) % 10)  # other content
    with pytest.raises(DatasetCorrupt, match="t10k-labels-idx1-ubyte.gz: checksum mismatch"):
        datamod.prepare("fashion_mnist", DatasetConfig(source=str(folder)), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_truncated_file_is_refused(idx_folder, tmp_path):
    folder, _ = idx_folder
    path = folder / "train-images-idx3-ubyte.gz"
    blob = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(blob[:-100]))
    with pytest.raises(DatasetCorrupt, match="truncated"):
        datamod.prepare("fashion_mnist", DatasetConfig(source=str(folder)), tmp_path / "out")


def test_corrupt_gzip_is_refused(idx_folder, tmp_path):
    folder, _ = idx_folder
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(DatasetCorrupt, match="train-labels-idx1-ubyte.gz"):
        datamod.prepare("fashion_mnist", DatasetConfig(source=str(folder)), tmp_path / "out")


def test_prepared_tampering_is_detected(image_prepared, tmp_path):
    folder = tmp_path / "fmnist"
    arr = np.load(folder / "test_y.npy")
    np.save(folder / "test_y.npy", (arr + 1) % 10)
    with pytest.raises(DatasetCorrupt, match="test_y.npy: checksum differs"):
        datamod.load_prepared(folder)


def test_split_caps(idx_folder, tmp_path):
    folder, _ = idx_folder
    out = datamod.prepare("fashion_mnist", DatasetConfig(source=str(folder), n_train=50, n_test=10), tmp_path / "p")
    prepared = datamod.load_prepared(out)
    assert len(prepared.x("train")) == 50 and len(prepared.y("test")) == 10


def test_toy2d_follows_avae_5_1(toy_prepared):
    x = np.asarray(toy_prepared.x("train"))
    assert x.shape == (2000, 2) and x.dtype == np.float32
    # x1 = 3 z1 + 0.1 eps has std ≈ 3; x2 = cos(3 z1) + tanh(3 z2) + noise lies in about [-2.3, 2.3]
    assert 2.7 < x[:, 0].std() < 3.3 and np.abs(x[:, 1]).max() < 2.6


def test_sampler_state_roundtrip(toy_prepared):
    s = datamod.BatchSampler(toy_prepared.x("train"), toy_prepared.info, 64, torch.device("cpu"), 1)
    for _ in range(40):  # crosses an epoch boundary
        s.next()
    state = s.state_dict()
    expected = [s.next() for _ in range(5)]
    s2 = datamod.BatchSampler(toy_prepared.x("train"), toy_prepared.info, 64, torch.device("cpu"), 99)
    s2.load_state_dict(state)
    assert all(torch.equal(a, s2.next()) for a in expected)


def test_chunked_writing_matches_one_chunk_and_cleans_up(idx_folder, tmp_path):
    folder, _ = idx_folder
    whole = datamod.load_prepared(datamod.prepare("fashion_mnist", DatasetConfig(source=str(folder)), tmp_path / "a"))
    chunked = datamod.load_prepared(datamod.prepare("fashion_mnist", DatasetConfig(source=str(folder), chunk=7),
                                                    tmp_path / "b"))
    assert whole.meta["files"] == chunked.meta["files"]  # byte-identical arrays
    assert not (tmp_path / "b.tmp").exists()
    assert chunked.meta["dataset"] == "fashion_mnist" and chunked.meta["config"]["source"] == str(folder)


def test_stale_tmp_of_another_plan_is_not_resumed(idx_folder, tmp_path):
    folder, arrays = idx_folder
    stale = tmp_path / "out.tmp"
    stale.mkdir()
    (stale / "progress.json").write_text(json.dumps({"fingerprint": "other", "done": {"train": 96}}))
    np.save(stale / "train_x.npy", np.zeros((96, 1, 32, 32), np.uint8))
    prepared = datamod.load_prepared(datamod.prepare("fashion_mnist", DatasetConfig(source=str(folder)),
                                                     tmp_path / "out"))
    assert np.array_equal(prepared.x("train")[:, 0, 2:30, 2:30], arrays["train_x"])
