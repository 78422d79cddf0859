"""The dataset registry on small files written in each dataset's real on-disk format.

Fixture checksums are pinned by monkeypatching the declarations' md5 tables (as
conftest.idx_folder does for Fashion-MNIST); the tables themselves are checked against
torchvision's source.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import pickle
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import data as datamod
from pipeline.config import parse_params
from pipeline.datainfo import DatasetCorrupt, DatasetMissing
from pipeline.datasets import DATASETS
from pipeline.datasets import celeba, cifar, lsun, mnist, svhn
from pipeline.datasets.base import crop_box
from pipeline.schema import ConfigError
from pipeline.sections import DatasetConfig
from tests.conftest import tiny_params, write_idx

RNG = np.random.default_rng(0)


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def blocky(h: int, w: int, rng=RNG) -> np.ndarray:
    """h x w x 3 uint8 image made of 2x2 constant blocks (a 2x box resize of it is exact)."""
    return rng.integers(0, 256, (h // 2, w // 2, 3), dtype=np.uint8).repeat(2, 0).repeat(2, 1)


def halve(image: np.ndarray) -> np.ndarray:
    """The 2x2-block image at half size, C x H x W (what box resampling by 2 gives)."""
    return image[::2, ::2].transpose(2, 0, 1)


# ------------------------------------------------------------------ registry and config


def test_checksum_tables_match_torchvision():
    from torchvision import datasets as tv

    assert cifar.CIFAR10.archive_md5 == tv.CIFAR10.tgz_md5 and cifar.CIFAR100.archive_md5 == tv.CIFAR100.tgz_md5
    assert [tuple(b) for b in tv.CIFAR10.train_list + tv.CIFAR10.test_list] == cifar.CIFAR10().all_batches()
    assert [tuple(b) for b in tv.CIFAR100.train_list + tv.CIFAR100.test_list] == cifar.CIFAR100().all_batches()
    assert {s: tuple(tv.SVHN.split_list[s][1:]) for s in ("train", "test")} == svhn.MD5
    assert sorted(mnist.MD5.values()) == sorted(tv.MNIST.resources)
    tv_celeba = {fname: digest for _, digest, fname in tv.CelebA.file_list}
    assert all(tv_celeba[f] == d for f, d in celeba.MD5.items())


def test_offline_every_real_dataset_is_absent_with_instructions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/raw here
    for name, dataset in DATASETS.items():
        monkeypatch.delenv(dataset.env, raising=False)
    report = datamod.data_report({}, tmp_path / "prepared")
    for name in ("cifar10", "cifar100", "svhn", "celeba", "lsun_bedroom", "mnist", "color_mnist", "ffhq",
                 "image_folder"):
        with pytest.raises(DatasetMissing, match=rf"{name}: raw files not found \(looked in: default data/raw"):
            DATASETS[name].open(DatasetConfig(), name)
        assert f"{name} [not in params]: raw ABSENT" in report
    assert "$CELEBA_DIR" in report and "download: true" in report


def test_params_alias_and_validation():
    raw = tiny_params(datasets={"toy2d": {}, "celeba96": {"loader": "celeba", "resolution": 96, "source": "/x"}})
    assert parse_params(raw).datasets["celeba96"].resolution == 96
    with pytest.raises(ConfigError, match=r"datasets\.faces\.loader.*'nope'"):
        parse_params(tiny_params(datasets={"toy2d": {}, "faces": {"loader": "nope"}}))
    with pytest.raises(ConfigError, match="crop"):
        DatasetConfig(crop="1.5")
    with pytest.raises(ConfigError, match="resample"):
        DatasetConfig(resample="cubic")
    with pytest.raises(ConfigError, match=r"test_split.*'valid'; cifar10 offers \['test'\]"):
        DATASETS["cifar10"].preprocessing(DatasetConfig(test_split="valid"))


def test_crop_box_follows_tf_central_crop():
    # tf.image.central_crop(0.7) on CelebA's 178 x 218: start int((218 - 152.6) / 2) = 32, int((178 - 124.6) / 2) = 26
    assert crop_box(178, 218, "0.7") == (26, 32, 152, 186)
    assert crop_box(48, 40, "square") == (4, 0, 44, 40)
    assert crop_box(10, 20, "none") == (0, 0, 10, 20)


# ------------------------------------------------------------------ CIFAR


def cifar_files(folder, dataset, per_batch: int) -> dict:
    """The dataset's pickled batches (random images) under folder/<release folder>; returns x, y per split."""
    (folder / dataset.folder).mkdir(parents=True)
    out = {}
    for split in ("train", "test"):
        xs, ys = [], []
        for batch, _ in dataset.batches[split]:
            x = RNG.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            y = RNG.integers(0, dataset.n_classes, per_batch).tolist()
            with open(folder / dataset.folder / batch, "wb") as f:
                pickle.dump({"data": x, dataset.label_key: y, "batch_label": batch}, f)
            xs.append(x.reshape(-1, 3, 32, 32))
            ys.append(y)
        out[split] = (np.concatenate(xs), np.concatenate(ys))
    return out


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_archive_is_verified_and_prepared(name, tmp_path, monkeypatch):
    dataset = DATASETS[name]
    expected = cifar_files(tmp_path / "extract", dataset, per_batch=6)
    archive = tmp_path / "raw" / dataset.archive
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "extract" / dataset.folder, arcname=dataset.folder)
    monkeypatch.setattr(type(dataset), "archive_md5", md5(archive))
    out = datamod.prepare(name, DatasetConfig(source=str(archive.parent), chunk=4), tmp_path / "prep")
    prepared = datamod.load_prepared(out)
    for split in ("train", "test"):
        assert np.array_equal(prepared.x(split), expected[split][0])
        assert np.array_equal(prepared.y(split), expected[split][1])
    assert prepared.info.shape == (3, 32, 32) and prepared.info.n_classes == dataset.n_classes
    assert prepared.meta["sources"][dataset.archive]["md5"] == md5(archive)


def test_cifar_extracted_folder_checks_each_batch(tmp_path, monkeypatch):
    dataset = DATASETS["cifar10"]
    cifar_files(tmp_path, dataset, per_batch=2)
    pinned = {s: [(b, md5(tmp_path / dataset.folder / b)) for b, _ in bs] for s, bs in dataset.batches.items()}
    monkeypatch.setattr(cifar.CIFAR10, "batches", pinned)
    out = datamod.prepare("cifar10", DatasetConfig(source=str(tmp_path)), tmp_path / "prep")
    assert datamod.load_prepared(out).x("train").shape == (10, 3, 32, 32)
    (tmp_path / dataset.folder / "data_batch_3").write_bytes(b"\x80not the batch")
    with pytest.raises(DatasetCorrupt, match="data_batch_3: checksum mismatch"):
        datamod.prepare("cifar10", DatasetConfig(source=str(tmp_path)), tmp_path / "prep2")


def test_cifar_truncated_or_corrupt_archive_is_refused_and_nothing_written(tmp_path, monkeypatch):
    dataset = DATASETS["cifar10"]
    cifar_files(tmp_path / "extract", dataset, per_batch=4)
    archive = tmp_path / "raw" / dataset.archive
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "extract" / dataset.folder, arcname=dataset.folder)
    monkeypatch.setattr(cifar.CIFAR10, "archive_md5", md5(archive))
    archive.write_bytes(archive.read_bytes()[:-500])  # truncated download
    with pytest.raises(DatasetCorrupt, match=r"cifar-10-python.tar.gz: checksum mismatch.*Delete it and download"):
        datamod.prepare("cifar10", DatasetConfig(source=str(archive.parent)), tmp_path / "prep")
    monkeypatch.setattr(cifar.CIFAR10, "archive_md5", md5(archive))  # even with a matching checksum
    with pytest.raises(DatasetCorrupt, match="cifar-10-python.tar.gz: batch .* unreadable"):
        datamod.prepare("cifar10", DatasetConfig(source=str(archive.parent)), tmp_path / "prep")
    assert not (tmp_path / "prep").exists() and not (tmp_path / "prep.tmp").exists()


# ------------------------------------------------------------------ SVHN


def write_svhn(folder, n: int) -> dict:
    import scipy.io

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, (fname, _) in svhn.MD5.items():
        x = RNG.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        digits = RNG.integers(0, 10, n)
        labels = np.where(digits == 0, 10, digits)[:, None]  # SVHN stores 0 as 10
        scipy.io.savemat(folder / fname, {"X": x.transpose(2, 3, 1, 0), "y": labels})
        out[split] = (x, digits)
    return out


def pin_svhn(folder, monkeypatch):
    monkeypatch.setattr(svhn, "MD5", {s: (f, md5(folder / f)) for s, (f, _) in svhn.MD5.items()})


def test_svhn_mat_layout_and_zero_label(tmp_path, monkeypatch):
    expected = write_svhn(tmp_path / "svhn", 7)
    pin_svhn(tmp_path / "svhn", monkeypatch)
    prepared = datamod.load_prepared(datamod.prepare("svhn", DatasetConfig(source=str(tmp_path / "svhn"), n_test=5),
                                                     tmp_path / "prep"))
    assert np.array_equal(prepared.x("train"), expected["train"][0])
    assert np.array_equal(prepared.y("train"), expected["train"][1])  # 10 -> 0
    assert np.array_equal(prepared.x("test"), expected["test"][0][:5])  # n_test caps the split


def test_download_only_when_absent_and_enabled(tmp_path, monkeypatch):
    calls = []

    def fake_fetch(self, root):  # stands in for torchvision's downloader (offline machine)
        calls.append(root)
        write_svhn(root, 3)
        pin_svhn(root, monkeypatch)

    monkeypatch.setattr(svhn.SVHN, "fetch", fake_fetch)
    target = tmp_path / "fetched"
    with pytest.raises(DatasetMissing, match="download: true"):
        datamod.prepare("svhn", DatasetConfig(source=str(target)), tmp_path / "prep")
    assert calls == []
    datamod.prepare("svhn", DatasetConfig(source=str(target), download=True), tmp_path / "prep")
    datamod.prepare("svhn", DatasetConfig(source=str(target), download=True), tmp_path / "prep")
    assert calls == [target]  # present the second time: not downloaded again


# ------------------------------------------------------------------ CelebA


def write_celeba(folder, n: int = 6, as_zip: bool = False) -> list[str]:
    """178 x 218 jpgs: 200 inside the 70 % central crop box (26, 32, 152, 186), 0 outside."""
    folder.mkdir(parents=True)
    image = np.zeros((218, 178, 3), np.uint8)
    image[32:186, 26:152] = 200
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    blobs = {}
    for name in names:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=100, subsampling=0)
        blobs[name] = buffer.getvalue()
    if as_zip:
        with zipfile.ZipFile(folder / "img_align_celeba.zip", "w") as z:
            for name, blob in blobs.items():
                z.writestr(f"img_align_celeba/{name}", blob)
    else:
        (folder / "img_align_celeba").mkdir()
        for name, blob in blobs.items():
            (folder / "img_align_celeba" / name).write_bytes(blob)
    codes = ([0, 0, 0, 1, 2, 2] * (n // 6 + 1))[:n]  # train, train, train, valid, test, test, ...
    (folder / "list_eval_partition.txt").write_text("".join(f"{a} {c}\n" for a, c in zip(names, codes)))
    return names


def test_celeba_folder_crop_resize_and_partition(tmp_path, monkeypatch):
    write_celeba(tmp_path / "celeba")
    monkeypatch.setitem(celeba.MD5, "list_eval_partition.txt", md5(tmp_path / "celeba" / "list_eval_partition.txt"))
    prepared = datamod.load_prepared(datamod.prepare("celeba", DatasetConfig(source=str(tmp_path)), tmp_path / "p"))
    x = np.asarray(prepared.x("train"))
    assert x.shape == (3, 3, 64, 64) and prepared.x("test").shape == (2, 3, 64, 64) and prepared.y("train") is None
    # the crop box holds exactly the 200-valued area: no black border bleeds in after the resize
    assert np.abs(x.astype(int) - 200).max() <= 3
    valid = datamod.prepare("celeba96", DatasetConfig(source=str(tmp_path), loader="celeba", resolution=96,
                                                      test_split="valid"), tmp_path / "p96")
    prepared96 = datamod.load_prepared(valid)
    assert prepared96.x("test").shape == (1, 3, 96, 96) and prepared96.info.name == "celeba96"
    assert prepared96.meta["splits"]["test"] == "partition 1 (valid)"


def test_celeba_zip_checksum(tmp_path, monkeypatch):
    write_celeba(tmp_path / "celeba", as_zip=True)
    monkeypatch.setitem(celeba.MD5, "list_eval_partition.txt", md5(tmp_path / "celeba" / "list_eval_partition.txt"))
    with pytest.raises(DatasetCorrupt, match="img_align_celeba.zip: checksum mismatch"):
        datamod.prepare("celeba", DatasetConfig(source=str(tmp_path)), tmp_path / "p")
    monkeypatch.setitem(celeba.MD5, "img_align_celeba.zip", md5(tmp_path / "celeba" / "img_align_celeba.zip"))
    prepared = datamod.load_prepared(datamod.prepare("celeba", DatasetConfig(source=str(tmp_path)), tmp_path / "p"))
    assert prepared.x("train").shape == (3, 3, 64, 64)


def test_celeba_missing_image_is_named(tmp_path, monkeypatch):
    names = write_celeba(tmp_path / "celeba")
    monkeypatch.setitem(celeba.MD5, "list_eval_partition.txt", md5(tmp_path / "celeba" / "list_eval_partition.txt"))
    (tmp_path / "celeba" / "img_align_celeba" / names[1]).unlink()
    with pytest.raises(DatasetCorrupt, match=f"{names[1]}: listed in list_eval_partition.txt but missing"):
        datamod.prepare("celeba", DatasetConfig(source=str(tmp_path)), tmp_path / "p")
    assert not (tmp_path / "p").exists()


# ------------------------------------------------------------------ LSUN (LMDB)


def write_lsun(root, n_train: int, n_val: int, h: int = 40, w: int = 48, lossless: bool = True) -> dict:
    """bedroom_{train,val}_lmdb with webp values, as the LSUN export stores them (lossless: pixel-exact)."""
    import lmdb

    images = {}
    for split, n in (("train", n_train), ("val", n_val)):
        env = lmdb.open(str(root / f"bedroom_{split}_lmdb"), map_size=1 << 30)
        images[split] = []
        with env.begin(write=True) as txn:
            for i in range(n):
                image = blocky(h, w)
                buffer = io.BytesIO()
                Image.fromarray(image).save(buffer, "WEBP", lossless=lossless)
                txn.put(f"{i:08x}".encode(), buffer.getvalue())
                images[split].append(image)
        env.close()
    return images


def test_lsun_square_crop_and_box_resize_are_pixel_exact(tmp_path, monkeypatch):
    images = write_lsun(tmp_path, 5, 3)
    monkeypatch.setattr(lsun, "COUNTS", {"train": 5, "val": 3})
    cfg = DatasetConfig(source=str(tmp_path), resolution=20, resample="box", chunk=2)
    prepared = datamod.load_prepared(datamod.prepare("lsun_bedroom", cfg, tmp_path / "p"))
    for split, official in (("train", "train"), ("test", "val")):
        # 48 x 40 -> centred 40 x 40 square (columns 4..44) -> 20 x 20 by 2x2 box averaging
        expected = np.stack([halve(im[:, 4:44]) for im in images[official]])
        assert np.array_equal(prepared.x(split), expected)


def test_lsun_wrong_entry_count_is_refused(tmp_path, monkeypatch):
    write_lsun(tmp_path, 4, 2)
    with pytest.raises(DatasetCorrupt, match=r"bedroom_train_lmdb: 4 entries, the official export has 3033042"):
        datamod.prepare("lsun_bedroom", DatasetConfig(source=str(tmp_path)), tmp_path / "p")


def traced_peak(run) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_lsun_memory_stays_bounded(tmp_path, monkeypatch):
    n = 1000
    write_lsun(tmp_path, n, 2, h=64, w=80, lossless=False)  # 64 x 80 x 3 decoded: 15 MB for the split
    monkeypatch.setattr(lsun, "COUNTS", {"train": n, "val": 2})
    cfg = DatasetConfig(source=str(tmp_path), resolution=32, chunk=50)  # 150 kB of pixels per chunk
    small = traced_peak(lambda: datamod.prepare("lsun_bedroom", DatasetConfig(**{**vars(cfg), "n_train": 400}),
                                                tmp_path / "small"))
    full = traced_peak(lambda: datamod.prepare("lsun_bedroom", cfg, tmp_path / "p"))
    print(f"peak {small / 2**20:.2f} MiB for 400 images, {full / 2**20:.2f} MiB for {n}")
    whole_raw, whole_prepared = n * 64 * 80 * 3, n * 3 * 32 * 32
    assert full < small + 2**17  # 2.5 times the images, (almost) the same peak: one chunk at a time
    assert full < whole_prepared < whole_raw / 4
    assert datamod.load_prepared(tmp_path / "p").x("train").shape == (n, 3, 32, 32)


def test_interrupted_prepare_resumes_at_its_last_chunk(tmp_path, monkeypatch):
    write_lsun(tmp_path, 9, 2)
    monkeypatch.setattr(lsun, "COUNTS", {"train": 9, "val": 2})
    cfg = DatasetConfig(source=str(tmp_path), resolution=8, chunk=2)
    reference = np.array(datamod.load_prepared(datamod.prepare("lsun_bedroom", cfg, tmp_path / "ref")).x("train"))

    starts = []
    original = lsun.LmdbReader.read

    def interrupted(self, start, stop):
        if len(starts) == 3:
            raise KeyboardInterrupt  # killed during the fourth chunk
        starts.append(start)
        return original(self, start, stop)

    monkeypatch.setattr(lsun.LmdbReader, "read", interrupted)
    with pytest.raises(KeyboardInterrupt):
        datamod.prepare("lsun_bedroom", cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists() and (tmp_path / "out.tmp" / "progress.json").exists()

    resumed = []
    monkeypatch.setattr(lsun.LmdbReader, "read", lambda self, a, b: resumed.append(a) or original(self, a, b))
    prepared = datamod.load_prepared(datamod.prepare("lsun_bedroom", cfg, tmp_path / "out"))
    assert resumed[0] == 6  # three chunks of 2 were done
    assert np.array_equal(prepared.x("train"), reference)
    assert not (tmp_path / "out.tmp").exists()


# ------------------------------------------------------------------ MNIST and ColorMNIST


@pytest.fixture
def mnist_folder(tmp_path, monkeypatch):
    folder = tmp_path / "mnist"
    folder.mkdir()
    arrays = {"train_x": RNG.integers(0, 256, (40, 28, 28)), "train_y": RNG.integers(0, 10, 40),
              "test_x": RNG.integers(0, 256, (12, 28, 28)), "test_y": RNG.integers(0, 10, 12)}
    pinned = {}
    for key, (fname, _) in mnist.MD5.items():
        write_idx(folder / fname, arrays[key])
        pinned[key] = (fname, md5(folder / fname))
    monkeypatch.setattr(mnist, "MD5", pinned)
    return folder, arrays


def test_mnist_idx_padded(mnist_folder, tmp_path):
    folder, arrays = mnist_folder
    prepared = datamod.load_prepared(datamod.prepare("mnist", DatasetConfig(source=str(folder)), tmp_path / "p"))
    assert np.array_equal(prepared.x("train")[:, 0, 2:30, 2:30], arrays["train_x"])
    assert prepared.x("train")[:, :, :2].max() == 0 and np.array_equal(prepared.y("test"), arrays["test_y"])
    native = datamod.prepare("mnist", DatasetConfig(source=str(folder), resolution=28), tmp_path / "p28")
    assert np.array_equal(datamod.load_prepared(native).x("test")[:, 0], arrays["test_x"])


def test_mnist_wrong_checksum(mnist_folder, tmp_path):
    folder, arrays = mnist_folder
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"\0\0\x08\x01\0\0\0\x01\x05")
    with pytest.raises(DatasetCorrupt, match="t10k-labels-idx1-ubyte.gz: checksum mismatch"):
        datamod.prepare("mnist", DatasetConfig(source=str(folder)), tmp_path / "p")


def test_color_mnist_stacks_three_digits(mnist_folder, tmp_path):
    folder, arrays = mnist_folder
    cfg = DatasetConfig(source=str(folder), n_train=30, n_test=10, seed=3)
    prepared = datamod.load_prepared(datamod.prepare("color_mnist", cfg, tmp_path / "p"))
    x, y = np.asarray(prepared.x("train")), np.asarray(prepared.y("train"))
    assert x.shape == (30, 3, 32, 32) and prepared.info.n_classes == 1000
    digits = arrays["train_x"].reshape(len(arrays["train_x"]), -1)
    for image, label in zip(x, y):
        index = [int(np.flatnonzero((digits == image[c, 2:30, 2:30].ravel()).all(1))[0]) for c in range(3)]
        r, g, b = arrays["train_y"][index]
        assert label == 100 * r + 10 * g + b
    assert len({tuple(im[:, 16, 16]) for im in x}) > 1  # channels differ between images


# ------------------------------------------------------------------ image_folder and FFHQ


def test_image_folder_split_file_and_pixel_exact_fraction_crop(tmp_path):
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    inner = {}
    for i in range(4):
        image = np.zeros((100, 100, 3), np.uint8)
        inner[i] = blocky(70, 70)
        image[15:85, 15:85] = inner[i]  # crop "0.7": start int((100 - 70) / 2) = 15, size 70
        Image.fromarray(image).save(root / ("sub" if i % 2 else ".") / f"im{i}.png")
    # a label column: the labels come from it, so images may sit at the top and in subfolders alike
    (tmp_path / "split.txt").write_text("im0.png train 3\nsub/im1.png test 0\n\nim2.png train 1\n")
    cfg = DatasetConfig(source=str(root), loader="image_folder", crop="0.7", resolution=35, resample="box",
                        split_file=str(tmp_path / "split.txt"))
    prepared = datamod.load_prepared(datamod.prepare("faces", cfg, tmp_path / "p"))
    assert np.array_equal(prepared.x("train"), np.stack([halve(inner[0]), halve(inner[2])]))
    assert np.array_equal(prepared.x("test"), halve(inner[1])[None])
    assert prepared.y("train").tolist() == [3, 1] and prepared.y("test").tolist() == [0]
    assert prepared.info.n_classes == 4
    assert prepared.meta["labels"] == {"labelled": True, "source": "split_file", "n_classes": 4,
                                       "classes": ["0", "1", "2", "3"]}
    for text, problem in (("im9.png train\n", "im9.png is not an image under the source folder"),
                          ("im0.png train 1\nim2.png test\n", ":2: some lines have a label column and some not"),
                          ("im0.png train\nim0.png test\n", ":2: im0.png is listed twice"),
                          ("im0.png valid\n", r":1: expected '<relative path> <train\|test>' lines"),
                          ("im0.png train -1\n", r":1: expected .*integer label"),
                          ("im0.png train\nim2.png train\n", "split.txt: lists no test image")):
        (tmp_path / "split.txt").write_text(text)
        with pytest.raises(DatasetCorrupt, match=problem):
            datamod.prepare("faces", cfg, tmp_path / "p2")
    assert not (tmp_path / "p2").exists() and not (tmp_path / "p2.tmp").exists()


def write_pngs(folder, names: list[str], size: int = 6, mode: str = "L") -> dict[str, np.ndarray]:
    """Random images saved as PNGs at folder/<name>; returns {name: pixels (H x W [x 3])}."""
    images = {}
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shape = (size, size) if mode == "L" else (size, size, 3)
        images[name] = RNG.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(images[name], mode).save(folder / name)
    return images


def test_image_folder_class_subfolders_are_labels_as_torchvision_reads_them(tmp_path):
    from torchvision.datasets import ImageFolder

    root = tmp_path / "digits"
    names = [f"{c}/{i}.png" for c in ("0", "1", "10", "2") for i in range(3)] + ["2/more/7.png"]
    images = write_pngs(root, names)  # grayscale, as torchvision's ImageFolder tutorials' digits
    cfg = DatasetConfig(source=str(root), loader="image_folder", resolution=6, crop="none")
    prepared = datamod.load_prepared(datamod.prepare("mine", cfg, tmp_path / "p"))
    ordered = sorted(names)  # every 10th sorted image is test
    expected = {"train": [n for i, n in enumerate(ordered) if i % 10 != 9],
                "test": [n for i, n in enumerate(ordered) if i % 10 == 9]}
    torchvision_label = {str(Path(path).relative_to(root)): label for path, label in ImageFolder(str(root)).samples}
    assert len(torchvision_label) == len(names)
    for split, chosen in expected.items():
        gray = np.stack([images[n] for n in chosen])
        assert np.array_equal(prepared.x(split), np.repeat(gray[:, None], 3, 1))  # L -> RGB replicates
        assert prepared.y(split).tolist() == [torchvision_label[n] for n in chosen]
    assert prepared.y("train").tolist()[:3] == [0, 0, 0] and torchvision_label["2/more/7.png"] == 3  # "10" < "2"
    assert prepared.info.n_classes == 4
    assert prepared.meta["labels"] == {"labelled": True, "source": "class subfolders", "n_classes": 4,
                                       "classes": ["0", "1", "10", "2"]}


def test_image_folder_flat_is_unlabelled_and_a_mixed_layout_is_refused(tmp_path):
    root = tmp_path / "flat"
    images = write_pngs(root, [f"{i:02d}.png" for i in range(10)], mode="RGB")
    cfg = DatasetConfig(source=str(root), loader="image_folder", resolution=6, crop="none")
    prepared = datamod.load_prepared(datamod.prepare("mine", cfg, tmp_path / "p"))
    assert np.array_equal(prepared.x("test"), images["09.png"].transpose(2, 0, 1)[None])
    assert np.array_equal(prepared.x("train"), np.stack([images[f"{i:02d}.png"].transpose(2, 0, 1) for i in range(9)]))
    assert prepared.y("train") is None and prepared.y("test") is None and prepared.info.n_classes == 0
    assert prepared.meta["labels"]["labelled"] is False and prepared.meta["labels"]["n_classes"] == 0
    write_pngs(root, ["cats/a.png"])
    with pytest.raises(DatasetCorrupt, match=r"flat: 10 images directly in it \(e.g. 00.png\) and 1 in subfolders "
                                             r"\(e.g. cats/a.png\): put every image in a class subfolder"):
        datamod.prepare("mine", cfg, tmp_path / "p2")
    assert not (tmp_path / "p2").exists() and not (tmp_path / "p2.tmp").exists()


def test_ffhq_split_by_index_and_metadata_md5(tmp_path):
    root = tmp_path / "images1024x1024"
    entries = {}
    for index in (0, 1, 60000):
        sub = root / f"{index // 1000 * 1000:05d}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(blocky(16, 16)).save(sub / f"{index:05d}.png")
        entries[str(index)] = {"category": "training" if index < 60000 else "validation",
                               "image": {"file_path": f"images1024x1024/{sub.name}/{index:05d}.png",
                                         "file_md5": md5(sub / f"{index:05d}.png")}}
    (root / "ffhq-dataset-v2.json").write_text(json.dumps(entries))
    cfg = DatasetConfig(source=str(root), resolution=8)
    prepared = datamod.load_prepared(datamod.prepare("ffhq", cfg, tmp_path / "p"))
    assert prepared.x("train").shape == (2, 3, 8, 8) and prepared.x("test").shape == (1, 3, 8, 8)
    Image.fromarray(blocky(16, 16)).save(root / "00000" / "00001.png")  # other content than the metadata's
    with pytest.raises(DatasetCorrupt, match="00001.png: checksum mismatch with ffhq-dataset-v2.json"):
        datamod.prepare("ffhq", cfg, tmp_path / "p2")


def test_data_command_lists_presence_sources_and_prepared_size(tmp_path, monkeypatch, capsys, mnist_folder):
    import yaml

    from pipeline.cli import main

    folder, _ = mnist_folder
    monkeypatch.chdir(tmp_path)
    for dataset in DATASETS.values():
        monkeypatch.delenv(dataset.env, raising=False)
    raw = tiny_params(datasets={"toy2d": {}, "mnist": {"source": str(folder)}, "cifar10": {"download": True}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    datamod.prepare("mnist", DatasetConfig(source=str(folder)), tmp_path / "data" / "prepared" / "mnist")
    assert main(["data"]) == 0
    out = capsys.readouterr().out
    assert f"mnist: raw present in {folder}" in out and f"looked in: params source {folder}" in out
    assert "prepared: data/prepared/mnist (" in out and "'train_x': 40" in out
    assert "cifar10: raw ABSENT" in out and "download: enabled (torchvision, into data/raw/cifar10" in out
    assert "svhn [not in params]: raw ABSENT" in out and "$SVHN_DIR" in out
