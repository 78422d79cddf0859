"""Bad raw files, each made in its real format, met through `python -m pipeline prepare`: one
clear error line naming the file and the fix, no traceback, nothing at the output path.

Checksums of the fixtures are pinned as in test_datasets.py (a user's own copy whose
official checksum is unknown); the truncated LSUN database runs in a child process, since
reading it unguarded kills the process with SIGBUS.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline import data as datamod
from pipeline.cli import main
from pipeline.datasets import DATASETS
from pipeline.datasets import cifar, lsun, mnist, svhn
from pipeline.sections import DatasetConfig
from tests.conftest import ROOT, tiny_params, write_idx
from tests.test_datasets import blocky, cifar_files, halve, md5, write_lsun, write_pngs, write_svhn


def params_file(tmp_path, name: str, entry: dict):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params(datasets={"toy2d": {"n_train": 100, "n_test": 10}, name: entry})))
    return path


def prepare_fails(tmp_path, capsys, name: str, entry: dict) -> str:
    """Run `prepare` through the CLI; assert one clean error and nothing at the output path; the error."""
    out = tmp_path / "prepared" / name
    code = main(["--params", str(params_file(tmp_path, name, entry)), "prepare", name, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not out.exists()
    return err


# ------------------------------------------------------------------ 1. LSUN: truncated data.mdb


def test_lsun_truncated_data_mdb_is_named_before_any_read(tmp_path):
    (tmp_path / "lsun").mkdir()
    write_lsun(tmp_path / "lsun", 40, 3, h=64, w=64, lossless=True)
    data_mdb = tmp_path / "lsun" / "bedroom_train_lmdb" / "data.mdb"
    blob = data_mdb.read_bytes()
    data_mdb.write_bytes(blob[:len(blob) // 2])  # an interrupted copy: the meta pages (entry count) survive
    read_all = ("import lmdb, sys; env = lmdb.open(sys.argv[1], readonly=True, lock=False); "
                "print(env.stat()['entries']); [bytes(v) for _, v in env.begin().cursor()]")
    unguarded = subprocess.run([sys.executable, "-c", read_all, str(data_mdb.parent)], capture_output=True, text=True)
    assert unguarded.stdout.strip() == "40" and unguarded.returncode == -signal.SIGBUS  # what prepare met before

    out = tmp_path / "prepared" / "lsun_bedroom"
    command = [sys.executable, "-m", "pipeline", "--params",
               str(params_file(tmp_path, "lsun_bedroom", {"source": str(tmp_path / "lsun")})),
               "prepare", "lsun_bedroom", "--out", str(out)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"error: DatasetCorrupt: {data_mdb}: truncated ({len(blob) // 2} bytes; "
                                    f"its LMDB header says the database spans {len(blob)} bytes)")
    assert "copy it again or unzip bedroom_train_lmdb.zip again" in result.stderr
    assert not out.exists() and not out.with_name("lsun_bedroom.tmp").exists()


# ------------------------------------------------------------------ 2. FFHQ: the official download folder


def ffhq_download(top, indices=(0, 1, 60000), metadata: bool = True) -> dict:
    """images1024x1024/ and thumbnails128x128/ in the official sub-folder layout, with the json."""
    images, entries = {}, {}
    for index in indices:
        record = {"category": "training" if index < 60000 else "validation"}
        for kind, side in (("image", 16), ("thumbnail", 8)):
            folder = "images1024x1024" if kind == "image" else "thumbnails128x128"
            rel = f"{folder}/{index // 1000 * 1000:05d}/{index:05d}.png"
            (top / rel).parent.mkdir(parents=True, exist_ok=True)
            pixels = blocky(side, side)
            Image.fromarray(pixels).save(top / rel)
            record[kind] = {"file_path": rel, "file_md5": md5(top / rel)}
            if kind == "image":
                images[index] = pixels
        entries[str(index)] = record
    if metadata:
        (top / "ffhq-dataset-v2.json").write_text(json.dumps(entries))
    return images


@pytest.mark.parametrize("metadata", [True, False])
def test_ffhq_download_folder_reads_only_the_1024_images(tmp_path, metadata):
    images = ffhq_download(tmp_path / "ffhq", metadata=metadata)
    cfg = DatasetConfig(source=str(tmp_path / "ffhq"), resolution=8, resample="box")
    prepared = datamod.load_prepared(datamod.prepare("ffhq", cfg, tmp_path / "p"))
    assert np.array_equal(prepared.x("train"), np.stack([halve(images[0]), halve(images[1])]))
    assert np.array_equal(prepared.x("test"), halve(images[60000])[None])
    assert prepared.meta["sources"]["n_files"] == 3
    assert prepared.meta["source_dir"] == str(tmp_path / "ffhq" / "images1024x1024")


def test_ffhq_thumbnails_are_refused_with_the_folder_to_use(tmp_path, capsys):
    ffhq_download(tmp_path / "ffhq")
    err = prepare_fails(tmp_path, capsys, "ffhq", {"source": str(tmp_path / "ffhq" / "thumbnails128x128")})
    assert "thumbnails128x128: FFHQ's thumbnails128x128, not its images1024x1024 images; point datasets.ffhq" in err
    # a thumbnail copied in among the 1024 px images: the json tells it apart from a damaged image
    thumbnail = tmp_path / "ffhq" / "thumbnails128x128" / "00000" / "00001.png"
    (tmp_path / "ffhq" / "images1024x1024" / "00000" / "00001.png").write_bytes(thumbnail.read_bytes())
    err = prepare_fails(tmp_path, capsys, "ffhq", {"source": str(tmp_path / "ffhq")})
    assert "00001.png: FFHQ's 128 px thumbnail of this image (ffhq-dataset-v2.json), not the images1024x1024" in err
    # one index twice among the 1024 px images (a flat copy beside the sub-folders)
    (tmp_path / "ffhq" / "images1024x1024" / "00001.png").write_bytes(b"")
    err = prepare_fails(tmp_path, capsys, "ffhq", {"source": str(tmp_path / "ffhq")})
    assert "images1024x1024: image 1 is there twice (00000/00001.png, 00001.png): keep one copy" in err
    # the download folder without its 1024 px images
    for path in sorted((tmp_path / "ffhq" / "images1024x1024").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (tmp_path / "ffhq" / "images1024x1024").rmdir()
    err = prepare_fails(tmp_path, capsys, "ffhq", {"source": str(tmp_path / "ffhq")})
    assert "an FFHQ download folder with thumbnails128x128 but no images1024x1024/" in err


# ------------------------------------------------------------------ 3. 16-bit PNGs


def png16(path, values: np.ndarray) -> None:
    """A 16-bit PNG written byte by byte (colour type 0: grey, 2: RGB), as a scanner or camera tool would."""
    height, width = values.shape[:2]
    colour_type = 0 if values.ndim == 2 else 2
    rows = b"".join(b"\0" + values[r].astype(">u2").tobytes() for r in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


def test_16_bit_pngs_keep_their_high_byte(tmp_path):
    root = tmp_path / "scans"
    root.mkdir()
    grey = np.array([[0, 255, 256, 257], [511, 32767, 32768, 33000], [65279, 65280, 65534, 65535],
                     [4660, 22136, 43981, 61183]], np.uint16)
    Image.fromarray(grey).save(root / "grey16.png")  # PIL writes mode I;16 as a 16-bit PNG
    png16(root / "rgb48.png", np.stack([grey, grey.T, 65535 - grey], -1))
    Image.fromarray(np.full((4, 4), 77, np.uint8)).save(root / "grey8.png")
    assert (root / "grey16.png").read_bytes()[24] == 16 and Image.open(root / "grey16.png").mode == "I;16"
    assert (root / "rgb48.png").read_bytes()[24] == 16
    (tmp_path / "split.txt").write_text("grey16.png train\nrgb48.png train\ngrey8.png test\n")
    cfg = DatasetConfig(source=str(root), loader="image_folder", resolution=4, crop="none",
                        split_file=str(tmp_path / "split.txt"))
    x = datamod.load_prepared(datamod.prepare("scans", cfg, tmp_path / "p")).x("train")
    high = (grey >> 8).astype(np.uint8)  # v >> 8, as PIL reduces the 16-bit RGB file
    assert np.array_equal(x[0], np.stack([high] * 3))
    assert np.array_equal(x[1], np.stack([high, high.T, 255 - high]))
    assert high.tolist()[1] == [1, 127, 128, 128] and high.max() == 255  # not clipped to white


# ------------------------------------------------------------------ 4. image_folder with fewer than 10 images


def test_image_folder_with_fewer_than_10_images_names_the_rule_and_split_file(tmp_path, capsys):
    root = tmp_path / "few"
    write_pngs(root, [f"{i}.png" for i in range(9)], mode="RGB")
    err = prepare_fails(tmp_path, capsys, "mine", {"loader": "image_folder", "source": str(root)})
    assert (f"{root}: 9 images; without a split_file every 10th image (sorted) is the test split, which needs at "
            "least 10 images: add images, or set datasets.mine.split_file") in err
    assert not (tmp_path / "prepared" / "mine.tmp").exists()


# ------------------------------------------------------------------ 5. CIFAR: a batch missing from the folder


def test_cifar_folder_missing_a_batch_names_it(tmp_path, capsys):
    cifar_files(tmp_path / "raw", DATASETS["cifar10"], per_batch=2)
    (tmp_path / "raw" / "cifar-10-batches-py" / "data_batch_3").unlink()
    err = prepare_fails(tmp_path, capsys, "cifar10", {"source": str(tmp_path / "raw")})
    missing = tmp_path / "raw" / "cifar-10-batches-py" / "data_batch_3"
    assert f"cifar10: {tmp_path / 'raw'} holds only part of" in err
    assert f": {missing} missing (an interrupted copy or extraction?); re-extract the archive" in err
    report = datamod.data_report({"cifar10": DatasetConfig(source=str(tmp_path / "raw"))}, tmp_path / "prepared")
    assert f"cifar10: raw INCOMPLETE in {tmp_path / 'raw'}" in report
    assert f"missing: {missing}" in report


# ------------------------------------------------------------------ 6. truncated .mat, IDX counts that disagree


@pytest.mark.parametrize("keep", [0, 100, 0.5])
def test_svhn_truncated_mat_is_named(tmp_path, capsys, monkeypatch, keep):
    write_svhn(tmp_path / "svhn", 6)
    path = tmp_path / "svhn" / "train_32x32.mat"
    blob = path.read_bytes()
    path.write_bytes(blob[:int(keep * len(blob)) if isinstance(keep, float) else keep])
    monkeypatch.setattr(svhn, "MD5", {s: (f, md5(tmp_path / "svhn" / f)) for s, (f, _) in svhn.MD5.items()})
    err = prepare_fails(tmp_path, capsys, "svhn", {"source": str(tmp_path / "svhn")})
    assert f"{path}: not a readable SVHN .mat file (" in err and "a truncated download?); download it again" in err


@pytest.mark.parametrize("split", ["train", "test"])
def test_mnist_image_and_label_counts_that_disagree_name_both_files(tmp_path, capsys, monkeypatch, split):
    folder = tmp_path / "mnist"
    folder.mkdir()
    counts = {"train": 20, "test": 8}
    pinned = {}
    for key, (fname, _) in mnist.MD5.items():
        n = counts[key[:-2]] - (key == f"{split}_y")  # one label short
        array = np.zeros((n, 28, 28), np.uint8) if key.endswith("_x") else np.arange(n) % 10
        write_idx(folder / fname, array)
        pinned[key] = (fname, md5(folder / fname))
    monkeypatch.setattr(mnist, "MD5", pinned)
    err = prepare_fails(tmp_path, capsys, "mnist", {"source": str(folder)})
    images, labels = (folder / pinned[f"{split}_{k}"][0] for k in "xy")
    assert (f"{images} holds {counts[split]} images but {labels} holds {counts[split] - 1} labels: they must come "
            "from the same release; download it again") in err


# ------------------------------------------------------------------ 7. a bad image met part-way


def test_bad_png_met_part_way_names_it_and_a_rerun_resumes(tmp_path, capsys):
    root = tmp_path / "imgs"
    images = write_pngs(root, [f"{i:02d}.png" for i in range(20)], mode="RGB")
    good = (root / "13.png").read_bytes()
    (root / "13.png").write_bytes(good[:len(good) // 2])  # an interrupted copy
    entry = {"loader": "image_folder", "source": str(root), "resolution": 6, "crop": "none", "chunk": 4}
    err = prepare_fails(tmp_path, capsys, "mine", entry)
    tmp = tmp_path / "prepared" / "mine.tmp"
    assert f"{root / '13.png'}: not a readable image (" in err and "replace it with a good copy" in err
    assert f"then run prepare again: it resumes at train example 12 (the finished chunks are kept in {tmp})" in err
    assert json.loads((tmp / "progress.json").read_text())["done"] == {"train": 12}

    (root / "13.png").write_bytes(good)
    out = tmp_path / "prepared" / "mine"
    assert main(["--params", str(tmp_path / "params.yaml"), "prepare", "mine", "--out", str(out)]) == 0
    assert f"[prepare] resuming {tmp}: {{'train': 12}}" in capsys.readouterr().err
    prepared = datamod.load_prepared(out)
    order = [f"{i:02d}.png" for i in range(20) if i % 10 != 9]
    assert np.array_equal(prepared.x("train"), np.stack([images[n].transpose(2, 0, 1) for n in order]))
    assert not tmp.exists()


def test_bad_lsun_entry_met_part_way_is_named(tmp_path, capsys, monkeypatch):
    import lmdb

    (tmp_path / "lsun").mkdir()
    write_lsun(tmp_path / "lsun", 6, 2)
    env = lmdb.open(str(tmp_path / "lsun" / "bedroom_train_lmdb"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"00000004", txn.get(b"00000004")[:40])  # a damaged WebP value
    env.close()
    monkeypatch.setattr(lsun, "COUNTS", {"train": 6, "val": 2})
    err = prepare_fails(tmp_path, capsys, "lsun_bedroom", {"source": str(tmp_path / "lsun"), "chunk": 2})
    assert f"{tmp_path / 'lsun' / 'bedroom_train_lmdb'} entry 00000004: not a readable image (" in err
    assert "it resumes at train example 4" in err


def test_bad_jpeg_met_part_way_is_named(tmp_path, capsys, monkeypatch):
    from pipeline.datasets import celeba
    from tests.test_datasets import write_celeba

    names = write_celeba(tmp_path / "celeba")
    monkeypatch.setitem(celeba.MD5, "list_eval_partition.txt", md5(tmp_path / "celeba" / "list_eval_partition.txt"))
    path = tmp_path / "celeba" / "img_align_celeba" / names[2]
    path.write_bytes(path.read_bytes()[:2000])  # a truncated JPEG
    err = prepare_fails(tmp_path, capsys, "celeba", {"source": str(tmp_path / "celeba"), "chunk": 2})
    assert f"{path.parent}/{names[2]}: not a readable image (" in err and "resumes at train example 2" in err
