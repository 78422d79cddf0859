"""Cost of every metric: seconds per metric per 1,000 samples on the default params.

    python benchmarks/metrics_bench.py [--params params.yaml] [--dataset fashion_mnist] [--model vae]
        [--seed 0] [--classifier classifiers/fashion_mnist] [--n-samples N]

Evaluates one trained cell (models/<dataset>/<model>/seed<k>) metric by metric, timing the
shared inputs (sample generation, reconstructions, feature extraction) separately from each
metric's own work, and prints a table. Nothing is written except the PNG strips, to a
temporary folder. Metrics whose weights are absent show as `missing` (and cost nothing).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from pipeline import evaluate  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from pipeline.data import load_prepared  # noqa: E402
from pipeline.run import load_autoencoder_dir, load_classifier_dir, load_model  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--model", default="vae")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classifier", type=Path, help="classifier folder (default: classifiers/<dataset>)")
    ap.add_argument("--n-samples", type=int, help="override evaluate.n_samples")
    args = ap.parse_args()

    params = load_params(args.params)
    cfg = params.evaluate if args.n_samples is None else replace(params.evaluate, n_samples=args.n_samples)
    if params.train.threads:
        torch.set_num_threads(params.train.threads)
    method, _ = load_model(Path("models") / args.dataset / args.model / f"seed{args.seed}" / "model.pt")
    data = load_prepared(f"data/prepared/{args.dataset}", verify=False)
    clf_dir = args.classifier or Path("classifiers") / args.dataset
    classifier, stats = load_classifier_dir(clf_dir) if (clf_dir / "classifier.pt").exists() else (None, None)
    autoencoder = load_autoencoder_dir(clf_dir) if (clf_dir / "classifier.json").exists() else None
    cell = evaluate.Cell(method, data, cfg, classifier, stats, args.seed, autoencoder=autoencoder)
    per_k = 1000 / cfg.n_samples
    print(f"cell {args.dataset}/{args.model}/seed{args.seed}: n_samples={cfg.n_samples}, test={len(cell.test_u8)}, "
          f"threads={torch.get_num_threads()}, classifier={'yes' if classifier else 'no'}")
    print(f"{'step':<32}{'seconds':>10}{'s / 1k samples':>16}")
    shared = [("generate samples", lambda: cell.samples_u8)]
    if cell.has_encoder:
        shared += [("reconstruct test split", lambda: cell.recon_u8), ("encode test split", lambda: cell.posterior)]
    if classifier is not None:
        shared.append(("classifier features (samples)", lambda: cell.sample_classifier_features))
    total = 0.0
    for name, fn in shared:
        t = timed(fn)
        total += t
        print(f"{'[shared] ' + name:<32}{t:>10.2f}{t * per_k:>16.3f}")
    for spec in cell.chosen():
        if cell.not_applicable(spec):
            continue
        t0 = time.perf_counter()
        rows = spec.fn(cell)
        t = time.perf_counter() - t0
        total += t
        status = "" if all(r.status == "ok" for r in rows) else "  (" + ", ".join(
            sorted({r.status for r in rows})) + ")"
        print(f"{spec.name:<32}{t:>10.2f}{t * per_k:>16.3f}{status}")
    with tempfile.TemporaryDirectory() as tmp:
        t = timed(lambda: evaluate.Pictures(cell, Path(tmp)).save_all())
    total += t
    print(f"{'pictures (PNG strips)':<32}{t:>10.2f}{t * per_k:>16.3f}")
    print(f"{'total':<32}{total:>10.2f}{total * per_k:>16.3f}")


if __name__ == "__main__":
    main()
