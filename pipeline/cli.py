"""`python -m pipeline <command>`: the entry points the DVC stages call, plus tools.

Commands: prepare, train (stage 1 and stage 2 alike), train-classifier, evaluate,
aggregate, methods (registered methods, one per line), weights (where the metric weights
are looked for), check (validate params.yaml).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.config import ConfigError, load_params


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("prepare", help="raw dataset -> prepared folder")
    s.add_argument("dataset")
    s.add_argument("--out", type=Path, required=True)

    s = sub.add_parser("train", help="train one cell (stage-1 VAE or adversarial model)")
    s.add_argument("dataset")
    s.add_argument("model")
    s.add_argument("seed", type=int)
    s.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    s.add_argument("--out", type=Path, required=True, help="model folder (model.pt, train_log.csv, run.json)")
    s.add_argument("--checkpoints", type=Path, required=True, help="resumable checkpoint folder")
    s.add_argument("--vae", type=Path, help="folder with the frozen export.pt (stage-2 models)")

    s = sub.add_parser("train-classifier", help="train the dataset classifier behind fd_classifier")
    s.add_argument("dataset")
    s.add_argument("--data", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)

    s = sub.add_parser("evaluate", help="metrics and image grids of one cell")
    s.add_argument("dataset")
    s.add_argument("model")
    s.add_argument("seed", type=int)
    s.add_argument("--data", type=Path, required=True)
    s.add_argument("--model-dir", type=Path, required=True)
    s.add_argument("--classifier", type=Path)
    s.add_argument("--out", type=Path, required=True)

    s = sub.add_parser("aggregate", help="every cell -> results.parquet, summary.json, table.md")
    s.add_argument("--evals", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)

    sub.add_parser("methods", help="list registered methods, one per line")
    s = sub.add_parser("weights", help="report where metric weights are looked for and what is present")
    sub.add_parser("check", help="validate the params file")
    return p


def run(args: argparse.Namespace) -> int:
    from pipeline import run as stages

    if args.command == "methods":
        from pipeline.methods import REGISTRY

        print("\n".join(sorted(REGISTRY)))
        return 0
    params = load_params(args.params)
    if args.command == "check":
        stages.check_grid(params)
        g = params.grid
        print(f"{args.params}: ok ({len(g.datasets)} datasets x {len(g.seeds)} seeds x {len(g.evaluate)} models)")
    elif args.command == "weights":
        from pipeline import weights

        print(weights.report(params.evaluate.inception_weights, params.evaluate.alexnet_weights))
    elif args.command == "prepare":
        stages.prepare_dataset(params, args.dataset, args.out)
    elif args.command == "train":
        stages.train_cell(params, args.dataset, args.model, args.seed, args.data, args.out, args.checkpoints, args.vae)
    elif args.command == "train-classifier":
        stages.train_classifier(params, args.dataset, args.data, args.out)
    elif args.command == "evaluate":
        stages.evaluate_cell(params, args.dataset, args.model, args.seed, args.data, args.model_dir, args.out,
                             args.classifier)
    elif args.command == "aggregate":
        stages.aggregate(params, args.evals, args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
