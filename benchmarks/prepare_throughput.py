"""Throughput and memory of `prepare` on synthetic raw files shaped like the real ones.

    .venv/bin/python benchmarks/prepare_throughput.py [--n 2000] [--chunk 512]

Writes, in a temporary folder, an LSUN-bedroom-shaped LMDB (256 x 341 lossy webp values)
and a CelebA-shaped folder (178 x 218 jpgs + list_eval_partition.txt), prepares each at the
papers' settings (64 x 64) with the checksums/counts pinned to the synthetic files, and
prints images per second, how much the process's peak resident memory grew while preparing,
and the extrapolated time for the real sizes (LSUN bedroom 3,033,042; CelebA 202,599).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import data as datamod  # noqa: E402
from pipeline.datasets import celeba, lsun  # noqa: E402
from pipeline.sections import DatasetConfig  # noqa: E402


def picture(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random picture with some texture (compresses like a photo, unlike noise)."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx * rng.uniform(0.5, 2) + c) + np.cos(5 * yy * rng.uniform(0.5, 2) + c)
                     for c in rng.uniform(0, 6, 3)], -1)
    return np.clip(127 + 60 * base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def encoded(image: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, fmt, quality=90)
    return buffer.getvalue()


def timed(name: str, cfg: DatasetConfig, out: Path, n: int, real: int) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    datamod.prepare(name, cfg, out)
    seconds = time.perf_counter() - start
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB on Linux
    rate = n / seconds
    print(f"{name}: {n} images in {seconds:.1f} s = {rate:.0f} img/s; peak RSS grew {growth / 1024:.0f} MiB "
          f"(chunk {cfg.chunk}); {real:,} images would take {real / rate / 3600:.2f} h on this machine")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="synthetic images per dataset")
    p.add_argument("--chunk", type=int, default=512, help="examples per written chunk")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    import lmdb

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "lsun").mkdir()
        for split, n in (("train", args.n), ("val", 30)):
            env = lmdb.open(str(root / "lsun" / f"bedroom_{split}_lmdb"), map_size=1 << 32)
            with env.begin(write=True) as txn:
                for i in range(n):
                    txn.put(f"{i:010d}".encode(), encoded(picture(256, 341, rng), "WEBP"))
            env.close()
        lsun.COUNTS = {"train": args.n, "val": 30}
        timed("lsun_bedroom", DatasetConfig(source=str(root / "lsun"), chunk=args.chunk), root / "p_lsun", args.n,
              3_033_042)

        folder = root / "celeba"
        (folder / "img_align_celeba").mkdir(parents=True)
        lines = []
        for i in range(args.n):
            (folder / "img_align_celeba" / f"{i + 1:06d}.jpg").write_bytes(encoded(picture(218, 178, rng), "JPEG"))
            lines.append(f"{i + 1:06d}.jpg {0 if i % 10 else 2}\n")
        (folder / "list_eval_partition.txt").write_text("".join(lines))
        celeba.MD5["list_eval_partition.txt"] = hashlib.md5((folder / "list_eval_partition.txt").read_bytes()).hexdigest()
        timed("celeba", DatasetConfig(source=str(folder), chunk=args.chunk), root / "p_celeba", args.n, 202_599)


if __name__ == "__main__":
    main()
