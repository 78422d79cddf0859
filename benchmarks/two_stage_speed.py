"""CPU training speed of the two-stage methods, relative to the β-VAE, measured interleaved.

    .venv/bin/python benchmarks/two_stage_speed.py [--params params.yaml] [--rounds 3] [--iters 5]

Builds every model (the stage-1 ones plus those trained on their exports) at the params'
network size and batch size on Fashion-MNIST-shaped random images (1 x 32 x 32), and times
full training iterations (every phase, as pipeline.training.Trainer runs them) in round-robin
rounds, so a machine shared with other jobs slows every model alike. Prints iterations per
second, seconds per iteration relative to `vae`, and the wall time each model's configured
iteration count would take at the measured speed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import load_params  # noqa: E402
from pipeline.data import BatchSampler  # noqa: E402
from pipeline.datainfo import DataInfo  # noqa: E402
from pipeline.export import export_vae, load_vae_export  # noqa: E402
from pipeline.methods import REGISTRY, build_method  # noqa: E402
from pipeline.training import Trainer  # noqa: E402

INFO = DataInfo("fashion_mnist", "image", (1, 32, 32), "[-1,1]", 10)
MODELS = ("vae", "vae_s", "lsr_gan", "avae_finetune", "avae_s")


def build(params, name: str, exports: dict, folder: Path):
    spec = params.model(name, params.grid.datasets[0])
    cls = REGISTRY[spec.method]
    method = build_method(spec, INFO, params.networks, exports[params.grid.stage1_of(name)] if cls.needs_vae else None)
    if cls.exports_vae:
        export_vae(method, folder / f"{name}.pt", {})
        exports[name] = load_vae_export(folder / f"{name}.pt")
    return method, spec.train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=5, help="iterations per model per round")
    args = ap.parse_args()
    params = load_params(args.params)
    data = np.random.default_rng(0).integers(0, 256, (1024, 1, 32, 32), dtype=np.uint8)
    exports: dict = {}
    trainers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            method, cfg = build(params, name, exports, Path(tmp))
            sampler = BatchSampler(data, INFO, cfg.batch_size, torch.device("cpu"), 0)
            trainers[name] = (Trainer(method.train(), sampler, cfg, Path(tmp) / f"{name}_ck", Path(tmp) / "log.csv",
                                      "bench"), cfg)
        seconds = {name: 0.0 for name in MODELS}
        for _ in range(args.rounds):
            for name, (trainer, _) in trainers.items():
                trainer.step()  # warm-up of this round
                t0 = time.perf_counter()
                for _ in range(args.iters):
                    trainer.step()
                seconds[name] += time.perf_counter() - t0
    n = args.rounds * args.iters
    base = seconds["vae"] / n
    print(f"{'model':>14} {'it/s':>8} {'x vae':>7} {'iterations':>10} {'minutes':>8}   (threads {torch.get_num_threads()})")
    for name, (_, cfg) in trainers.items():
        per_it = seconds[name] / n
        print(f"{name:>14} {1 / per_it:8.2f} {per_it / base:7.2f} {cfg.iterations:10d} {cfg.iterations * per_it / 60:8.1f}")


if __name__ == "__main__":
    main()
