"""CPU cost of a training iteration of the single-stage baselines, relative to `gan`.

    .venv/bin/python benchmarks/baselines_speed.py [--params params.yaml] [--iters 20] [--threads 1]
        [--data data/prepared/fashion_mnist] [models ...]

Runs full iterations (every phase, as pipeline.training.Trainer runs them) of each model at
the params' network and batch sizes on the prepared data, and prints the process CPU time per
iteration (robust to other jobs sharing the cores, unlike wall time), the wall time, the
ratio to `gan`, and the CPU time the model's configured iteration count would take.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import load_params  # noqa: E402
from pipeline.data import BatchSampler, load_prepared  # noqa: E402
from pipeline.methods import build_method  # noqa: E402
from pipeline.training import Trainer  # noqa: E402

MODELS = ("gan", "wgan_gp", "vae_gan", "bigan", "age", "alpha_gan", "alpha_gan_kl")


def cost_per_iteration(params, model: str, data, iters: int, folder: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per training iteration of `model`, after one warm-up."""
    spec = params.model(model, data.info.name)
    torch.manual_seed(0)
    method = build_method(spec, data.info, params.networks).train()
    sampler = BatchSampler(data.x("train"), data.info, spec.train.batch_size, torch.device("cpu"), 0)
    trainer = Trainer(method, sampler, spec.train, folder / f"{model}_ck", folder / f"{model}.csv", "bench")
    trainer.step()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(iters):
        trainer.step()
    return (time.process_time() - cpu) / iters, (time.perf_counter() - wall) / iters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=list(MODELS))
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default="data/prepared/fashion_mnist")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params, data = load_params(args.params), load_prepared(args.data)
    print(f"{'model':14s} {'cpu s/it':>9s} {'wall s/it':>10s} {'x gan':>6s} {'iterations':>10s} {'cpu s/cell':>10s}")
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            cpu, wall = cost_per_iteration(params, model, data, args.iters, Path(tmp))
            base = base or (cpu if model == "gan" else None)
            ratio = f"{cpu / base:6.2f}" if base else "     -"
            n = params.model(model).train.iterations
            print(f"{model:14s} {cpu:9.3f} {wall:10.3f} {ratio} {n:10d} {cpu * n:10.0f}", flush=True)


if __name__ == "__main__":
    main()
