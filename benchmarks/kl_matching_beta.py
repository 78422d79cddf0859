"""AVAE §5's rule for VAE/GAN's β on a dataset: the β at which its KL matches the VAE's.

    .venv/bin/python benchmarks/kl_matching_beta.py [--params params.yaml] [--dataset fashion_mnist]
        [--data data/prepared/fashion_mnist] [--seeds 0 1 2] [--betas 1 2 3 4 5 10 20] [--threads 2]
        [--slots 2] [--work /tmp/kl-beta]

AVAE §5: "the Kullback-Leibler divergence term is usually much higher for the VAE/GAN model ...
we introduced a hyper-parameter β to weight the Kullback-Leibler divergence in the encoder loss
... in order to get similar Kullback-Leibler divergences. This hyper-parameter search leads us to
the following (β_LSUN bedroom = 4, β_celeba = 5, β_CIFAR10 = 10, β_CIFAR100 = 10, β_SVHN = 20)."
A dataset outside those five gets its β the same way: this script trains the reference VAE and
the VAE/GAN at each β for the params' own iterations and networks, each seed, measures the
table's `kl` (KL(q(z|x) ‖ p(z)) on the evaluation's test images) and prints the β whose mean KL
is closest to the VAE's, for `models.vae_gan.beta` of that dataset.

`--slots N` trains N runs at once, each in its own process with cores / N threads (as the grid's
CPU slots). `--work DIR` keeps the runs' checkpoints there: the same command resumes a killed
calibration from them (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import parse_params  # noqa: E402
from pipeline.data import load_prepared  # noqa: E402
from pipeline.evaluate.adapters import kl_metric  # noqa: E402
from pipeline.evaluate.cell import Cell  # noqa: E402
from pipeline.execute import slot_threads  # noqa: E402
from pipeline.run import load_model, train_cell  # noqa: E402


def with_beta(raw: dict, model: str, dataset: str, beta: float) -> dict:
    """The raw params with `models.<model>.beta` set to `beta` for `dataset`."""
    out = copy.deepcopy(raw)
    entry = out["models"][model]
    entry["beta"] = {**entry["beta"], dataset: beta} if isinstance(entry.get("beta"), dict) else beta
    return out


def closest(kl_by_beta: dict[float, list[float]], target: float) -> float:
    """The β whose mean KL is nearest the target (AVAE §5: "similar Kullback-Leibler divergences")."""
    return min(kl_by_beta, key=lambda beta: abs(float(np.mean(kl_by_beta[beta])) - target))


def seed_std(values: list[float]) -> float:
    """The sample standard deviation over seeds (0 for one seed)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def kl_after_training(raw: dict, dataset: str, model: str, seed: int, data_dir: Path, cell: Path,
                      threads: int) -> float:
    """Train one run (resuming from cell/checkpoints) and measure the table's `kl` of it."""
    if threads:
        torch.set_num_threads(threads)
    params = parse_params(raw)
    train_cell(params, dataset, model, seed, data_dir, cell, cell / "checkpoints")
    method, _ = load_model(cell / "model.pt")  # as the evaluate stage loads it
    return kl_metric(Cell(method, load_prepared(data_dir), params.evaluate))[0].value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--data", type=Path, default=None, help="prepared folder (default data/prepared/<dataset>)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--betas", type=float, nargs="+", default=[1, 2, 3, 4, 5, 10, 20])
    ap.add_argument("--reference", default="vae", help="the model whose KL VAE/GAN's should match")
    ap.add_argument("--model", default="vae_gan")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads per run (0: torch's default; cores / slots with --slots)")
    ap.add_argument("--slots", type=int, default=1, help="runs trained at once, each in its own process")
    ap.add_argument("--work", type=Path, default=None, help="keep the runs here; a rerun resumes from them")
    args = ap.parse_args()
    raw = yaml.safe_load(args.params.read_text())
    data_dir = args.data or Path("data/prepared") / args.dataset
    load_prepared(data_dir)  # a missing or damaged folder fails here, before any training
    threads = args.threads or (slot_threads(args.slots) if args.slots > 1 else 0)
    runs = [(args.reference, None, seed) for seed in args.seeds]
    runs += [(args.model, beta, seed) for beta in args.betas for seed in args.seeds]

    pool = ProcessPoolExecutor(args.slots, mp_context=multiprocessing.get_context("spawn"))
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        futures = {}
        for model, beta, seed in runs:
            run_raw = raw if beta is None else with_beta(raw, args.model, args.dataset, beta)
            cell = work / ("reference" if beta is None else f"beta{beta:g}") / f"{model}_seed{seed}"
            futures[pool.submit(kl_after_training, run_raw, args.dataset, model, seed, data_dir, cell,
                                threads)] = (model, beta, seed)
        kl = {}
        try:
            for future in as_completed(futures):
                model, beta, seed = futures[future]
                kl[model, beta, seed] = future.result()
                print(f"  {model}{'' if beta is None else f' beta {beta:g}'} seed {seed}: "
                      f"kl {kl[model, beta, seed]:.2f}", flush=True)
        finally:  # a failed run stops the runs not started yet
            pool.shutdown(cancel_futures=True)
    reference = [kl[args.reference, None, seed] for seed in args.seeds]
    target = float(np.mean(reference))
    kl_by_beta = {beta: [kl[args.model, beta, seed] for seed in args.seeds] for beta in args.betas}
    print(f"\n{args.reference} kl on {args.dataset}: {target:.2f} ± {seed_std(reference):.2f} (seeds {args.seeds})")
    print(f"{'beta':>6s} {'kl mean':>8s} {'kl std':>7s}  {args.model}")
    for beta, values in kl_by_beta.items():
        print(f"{beta:6g} {np.mean(values):8.2f} {seed_std(values):7.2f}")
    print(f"\nclosest to {args.reference}'s kl: beta = {closest(kl_by_beta, target):g} "
          f"(models.{args.model}.beta for {args.dataset})")


if __name__ == "__main__":
    main()
