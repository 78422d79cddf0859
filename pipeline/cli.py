"""`python -m pipeline <command>`: the entry points the DVC stages call, plus tools.

Commands: prepare, train (stage 1 and stage 2 alike), train-classifier, evaluate,
aggregate, report (report.html), toy (AVAE §5.1 toy experiment: Fig. 6 PNG + JSON), diff (metric changes between
revisions, Markdown), pr-report (the pull-request report: metric and params diff, paper orderings that changed,
sample grids), metrics (registered metrics), grid (the whole grid through Prefect), worker (a host's Prefect worker
for a grid spread over hosts), data (datasets: raw files and prepared sizes), methods (registered methods, one per
line), weights (where the metric weights are looked for), check (validate params.yaml, count its stages; the metrics
each grid dataset cannot have, and why), use / smoke (a paper's params file as params.yaml, or at toy size).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

from pipeline.config import load_params
from pipeline.schema import ConfigError


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

    s = sub.add_parser("train-classifier", help="train the dataset classifier behind fd_classifier (labelled "
                       "data) and the autoencoder behind fd_autoencoder (any image data)")
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

    s = sub.add_parser("toy", help="AVAE §5.1 toy experiment: VAE vs AVAE (with/without ξ) on toy2d -> "
                       "the Fig. 6 PNG and a JSON of data densities at the reconstructions")
    s.add_argument("--data", type=Path, required=True, help="prepared toy2d folder")
    s.add_argument("--models", type=Path, required=True, help="folder for the three trained toy models")
    s.add_argument("--figure", type=Path, required=True, help="the PNG to write (e.g. docs/toy_avae.png)")
    s.add_argument("--summary", type=Path, required=True, help="the JSON to write (e.g. docs/toy_avae.json)")

    s = sub.add_parser("report", help="results.parquet + per-cell PNGs -> a self-contained report.html")
    s.add_argument("--results", type=Path, required=True, help="metrics/results.parquet (from aggregate)")
    s.add_argument("--evals", type=Path, required=True, help="folder of per-cell evaluation outputs (PNGs)")
    s.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    s.add_argument("--models", type=Path, help="folder of model outputs (train_log.csv curves)")
    s.add_argument("--curves", type=Path, help="folder for per-term training-curve CSVs (dvc plots)")

    s = sub.add_parser("diff", help="Markdown table of metric changes between two revisions "
                       "(dvc metrics/params diff), Welch's t-test with Benjamini-Hochberg across the table")
    s.add_argument("rev", help="old revision (e.g. main, HEAD~1)")
    s.add_argument("rev2", nargs="?", help="new revision (default: the workspace)")
    s.add_argument("--all", action="store_true", help="also list unchanged metrics and params")

    s = sub.add_parser("pr-report", help="the pull-request report as Markdown: significance-marked metric diff, "
                       "params diff, paper orderings that changed, base | head sample grids of changed cells")
    s.add_argument("--base", required=True, help="base revision (e.g. main, origin/main)")
    s.add_argument("--head", help="head revision (default: the workspace)")
    s.add_argument("--out", type=Path, help="write the Markdown here (default: print it)")
    s.add_argument("--grids", type=Path, help="folder for the base | head PNGs (default: grids/ beside --out, "
                   "else pr-report-grids/)")
    s.add_argument("--base-evals", type=Path, help="read the base grids from this folder (laid out like evals/) "
                   "instead of the base revision's DVC outputs")
    s.add_argument("--max-grids", type=int, help="changed cells shown as grids (default: 6)")

    sub.add_parser("metrics", help="list registered metrics with the cells they apply to")
    sub.add_parser("methods", help="list registered methods, one per line")
    s = sub.add_parser("bench", help="training/generation throughput, speed options on vs off, FLOPs, "
                                     "projected paper-grid device-hours")
    s.add_argument("--models", nargs="+", help="models to time (default: grid.evaluate)")
    s.add_argument("--resolution", type=int, default=32, choices=(32, 64))
    s.add_argument("--channels", type=int, default=3)
    s.add_argument("--steps", type=int, default=30, help="timed iterations per configuration")
    s.add_argument("--warmup", type=int, default=5)
    s.add_argument("--all-on", action="store_true", help="every speed option on (GPU), not params' train section")
    s.add_argument("--packing", type=int, default=2, help="seeds packed as concurrent processes (1 = skip)")
    s.add_argument("--no-packing", dest="packing", action="store_const", const=1)
    s.add_argument("--each", action="store_true", help="also time each speed option alone (which one pays here)")
    s.add_argument("--plain-only", action="store_true", help=argparse.SUPPRESS)
    s.add_argument("--json", action="store_true", help="print the raw rows as JSON")
    s = sub.add_parser("weights", help="report where metric weights are looked for and what is present")
    s = sub.add_parser("check", help="validate the params file and count its stages; say which metrics each grid "
                       "dataset cannot have and why (no labels, vector data, absent pretrained weights)")
    s.add_argument("--prepared", type=Path, default=Path("data/prepared"),
                   help="folder of prepared datasets, read when present (default: data/prepared)")
    for name, what in (("use", "validate a paper's params file and make it params.yaml (what `dvc repro` reads)"),
                       ("smoke", "write a params file's grid at toy size to params.yaml: a dry run of every stage")):
        s = sub.add_parser(name, help=what)
        s.add_argument("source", type=Path, help="e.g. params/avae.yaml")
        s.add_argument("--out", type=Path, default=Path("params.yaml"), help="where to write (default: params.yaml)")
        s.add_argument("--force", action="store_true", help="overwrite a params.yaml with uncommitted edits")
    s = sub.add_parser("data", help="each dataset: raw files present?, where looked for, prepared size")
    s.add_argument("--prepared", type=Path, default=Path("data/prepared"),
                   help="folder of prepared datasets (dvc.yaml's prepare outputs; default: data/prepared)")

    s = sub.add_parser("grid", help="run the grid through Prefect (pipeline/flows.py): concurrent cells, "
                       "one per GPU, retries, then one `dvc commit`")
    s.add_argument("--datasets", nargs="+", help="part of grid.datasets (default: all)")
    s.add_argument("--seeds", nargs="+", type=int, help="part of grid.seeds (default: all)")
    s.add_argument("--models", nargs="+", help="part of the grid's models (default: all)")
    s.add_argument("--no-aggregate", action="store_true", help="skip the aggregate stage")
    s.add_argument("--spread", action="store_true", help="each stage a flow run of stage/one-stage on any worker "
                   "of its pool, outputs through the DVC remote (needs a Prefect server: PREFECT_API_URL)")

    s = sub.add_parser("worker", help="this host's Prefect worker, in this checkout: stage runs, as many at once as "
                       "it has device slots (GPUs x orchestration.cells_per_gpu, or cpu_slots), heartbeats for "
                       "lost-host detection; --grid: grid and cell runs (the aggregating host)")
    s.add_argument("--pool", default="gpu-hosts", help="work pool (default: gpu-hosts)")
    s.add_argument("--grid", action="store_true", help="take the grid and cell runs (work queue grid) instead")
    return p


def prepared_dataset(args: argparse.Namespace) -> str | None:
    """The dataset a stage's --data folder must hold (None for commands without --data)."""
    if args.command == "toy":
        from pipeline.toy import DATASET

        return DATASET
    return args.dataset if args.command in ("train", "train-classifier", "evaluate") else None


def run(args: argparse.Namespace) -> int:
    from pipeline import run as stages

    if args.command == "methods":
        from pipeline.methods import REGISTRY

        print("\n".join(sorted(REGISTRY)))
        return 0
    if args.command == "metrics":
        from pipeline.evaluate import METRICS

        def row(r) -> str:  # name, ↓ / ↑ where lower / higher is better, its table section
            section = f" [{r.section.split()[0].lower()}]" if r.section else ""
            return r.name + {"lower": " ↓", "higher": " ↑"}.get(r.better, "") + section

        print("\n".join(f"{name}: needs {', '.join(sorted(spec.needs)) or 'nothing'}; rows "
                        + ", ".join(row(r) for r in spec.rows)
                        + (f"; weights {', '.join(spec.weights)}" if spec.weights else "")
                        for name, spec in METRICS.items()))
        return 0
    if args.command == "diff":
        from pipeline.diff import diff

        print(diff(args.rev, args.rev2, show_all=args.all), end="")
        return 0
    if args.command == "pr-report":
        from pipeline.pr_report import pr_report

        text = pr_report(args.base, args.head, out=args.out, grids_dir=args.grids, base_evals=args.base_evals,
                         max_grids=args.max_grids)
        if not args.out:
            print(text, end="")
        return 0
    if args.command in ("use", "smoke"):
        from pipeline import params_file

        params = getattr(params_file, args.command)(args.source, args.out, args.force)
        print(params_file.describe(params, args.out))
        print(f"next: `python -m pipeline data` (raw files present?), then `dvc repro` "
              f"({'a dry run at toy size' if args.command == 'smoke' else f'the grid of {args.source}'})")
        return 0
    params = load_params(args.params)
    dataset = prepared_dataset(args)
    if dataset is not None:
        from pipeline.data import require_prepared

        require_prepared(args.data, dataset, label=f"--data {args.data}")
    if args.command == "check":
        from pipeline.availability import report as availability
        from pipeline.datainfo import DatasetCorrupt
        from pipeline.params_file import describe

        stages.check_grid(params)
        print(describe(params, args.params))
        text, problems = availability(params, args.prepared)
        print(text)
        if problems:
            raise DatasetCorrupt("\n".join(problems))
    elif args.command == "data":
        from pipeline.data import data_report

        print(data_report(params.datasets, args.prepared))
    elif args.command == "weights":
        from pipeline import weights
        from pipeline.evaluate import registry

        needing = {name: registry.rows_needing(name) for name in registry.WEIGHTS}
        print(weights.report(needing, params.evaluate.inception_weights, params.evaluate.alexnet_weights))
    elif args.command == "bench":
        from pipeline import bench

        return bench.main(params, args.params, args.models, args.resolution, args.channels, args.steps,
                          args.warmup, args.all_on, args.packing, args.json, args.plain_only, args.each)
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
    elif args.command == "toy":
        from pipeline.toy import run_toy

        run_toy(params, args.data, args.models, args.figure, args.summary)
    elif args.command == "report":
        stages.report(params, args.results, args.evals, args.out, args.models, args.curves)
    elif args.command == "grid":
        # the temporary Prefect server's telemetry off unless the user turns it on (it can log a
        # "database is locked" traceback as the server starts); Prefect reads it when imported
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        from pipeline.flows import grid_flow

        grid_flow(datasets=args.datasets, seeds=args.seeds, models=args.models, params_file=args.params,
                  aggregate=not args.no_aggregate, spread=args.spread)
    elif args.command == "worker":
        from pipeline.devices import slot_devices
        from pipeline.prefect_runs import worker_command

        checkout = Path(__file__).resolve().parents[1]
        if args.grid:
            argv, env = worker_command(args.pool, "grid", None, params.orchestration, checkout)
            print(f"worker for {args.pool}/grid in {checkout}: grid and cell runs", flush=True)
        else:
            slots = slot_devices(params.orchestration)
            argv, env = worker_command(args.pool, "cells", len(slots), params.orchestration, checkout)
            print(f"worker for {args.pool}/cells in {checkout}: {len(slots)} stage run(s) at once on {slots}",
                  flush=True)
        os.execvpe(argv[0], argv, env)
    return 0


def report_error(message: str) -> None:
    """One `error:` line on stderr per line of `message` (a ConfigError lists one problem a line)."""
    for line in message.splitlines() or [""]:
        print(f"error: {line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run a command; bad input (params, folders, a full disk) ends in `error:` lines and a
    non-zero exit, not a traceback (2: params, 1: anything else). Programming errors still raise."""
    args = parser().parse_args(argv)
    try:
        return run(args)
    except ConfigError as e:
        report_error(str(e))
        return 2
    except OSError as e:  # FileNotFoundError (a missing input) included
        if e.errno == errno.ENOSPC:
            where = f" ({e.filename})" if e.filename else ""
            report_error(f"the disk is full{where}: nothing was overwritten (outputs are written to a temporary "
                         "file, then renamed); free some space and run the command again")
        else:
            report_error(f"{type(e).__name__}: {e}")
        return 1
    except (ValueError, RuntimeError) as e:
        report_error(f"{type(e).__name__}: {e}")
        return 1
