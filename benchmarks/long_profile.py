"""A grid too long for one sitting, run in parts: each part's finished cells are kept in a
committed folder (docs/cpu_long/ for params/cpu-long.yaml), every part is measured with the same
kept classifier and autoencoder, and the table is built from the kept cells.

In a clone whose params.yaml is the long params file (`python -m pipeline use params/cpu-long.yaml`):

    python benchmarks/long_profile.py todo docs/cpu_long                 # the cells not kept yet
    python benchmarks/long_profile.py restore docs/cpu_long              # the kept feature networks, in dvc.lock
    python -m pipeline grid --no-aggregate --seeds 1                     # one part
    python benchmarks/long_profile.py keep docs/cpu_long                 # its evaluated cells into the folder
    python benchmarks/long_profile.py table docs/cpu_long                # <folder>/metrics/ from the kept cells

(`--run <clone>` when the folder is in another checkout.) A part stopped before its end records
nothing in dvc.lock: `dvc commit -f` its finished train_classifier and evaluate stages, then `keep`.

`keep` takes a cell only when dvc.lock says its evaluation read the kept feature networks (the
first part keeps its own), so a part that trained its own classifier on another CPU cannot mix
into the table. Each kept cell holds the evaluation's metrics.parquet and samples.png, the training's run.json (CPU, threads,
wall time, speed options, commit) and train_log.csv; `table` lists them in <folder>/cells.csv.
A cell trained on another CPU model is not bitwise reproducible on this one (README: determinism).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import load_params  # noqa: E402
from pipeline.diff import dvc_executable, lock_stages as parse_lock_stages  # noqa: E402
from pipeline.execute import dvc_commit  # noqa: E402
from pipeline.io import atomic_write_json, atomic_write_text  # noqa: E402

CELL_FILES_FROM_TRAINING = ("run.json", "train_log.csv")
CELL_FILES_FROM_EVALUATION = ("metrics.parquet", "samples.png")  # the other pictures: 4x the bytes, left out


def grid_cells(params) -> list[tuple[str, str, int]]:
    g = params.grid
    return [(d, m, s) for d in g.datasets for m in g.evaluate for s in g.seeds]


def cell_dir(root: Path, dataset: str, model: str, seed: int) -> Path:
    return root / dataset / model / f"seed{seed}"


def lock_stages(run: Path) -> dict:
    lock = run / "dvc.lock"
    if not lock.exists():
        raise SystemExit(f"{lock} not found: run a part (`python -m pipeline grid ...`) in {run} first")
    return parse_lock_stages(lock.read_text())


def dep_md5(entry: dict, path: str) -> str | None:
    return next((d.get("md5") for d in entry.get("deps", []) if d["path"] == path), None)


def kept_networks(folder: Path) -> dict:
    path = folder / "classifiers.json"
    return json.loads(path.read_text()) if path.exists() else {}


def keep(folder: Path, run: Path) -> None:
    """Copy every evaluated cell of `run` that is not kept yet, and (first part) its feature networks.

    A cell counts as evaluated when `dvc status` finds its evaluate stage up to date: dvc.lock's
    entry (which names the classifier folder it read) describes the files now in `run`."""
    from dvc.repo import Repo

    from pipeline.plan import changed_here

    params = load_params(run / "params.yaml")
    stages = lock_stages(run)
    networks = kept_networks(folder)
    todo = {f"evaluate@{d}-{m}-{s}": (d, m, s) for d, m, s in grid_cells(params)
            if not cell_dir(folder / "cells", d, m, s).exists() and f"evaluate@{d}-{m}-{s}" in stages}
    first = [f"train_classifier@{d}" for d in params.grid.datasets if d not in networks]
    with Repo(str(run)) as repo:
        changed = changed_here(repo, {*todo, *first}) if todo else set()
    kept, skipped = 0, []
    for name, (dataset, model, seed) in todo.items():
        if name in changed:
            continue
        used = dep_md5(stages[name], f"classifiers/{dataset}")
        if dataset not in networks:  # the first part: its feature networks become the kept ones
            if f"train_classifier@{dataset}" in changed:
                raise SystemExit(f"{run / 'classifiers' / dataset} is not what dvc.lock records: "
                                 "run the part to the end (or `dvc commit` its finished stages) first")
            copy_whole(run / "classifiers" / dataset, folder / "classifiers" / dataset)
            networks[dataset] = used
            atomic_write_json(folder / "classifiers.json", networks)
        if used != networks[dataset]:
            skipped.append(f"{dataset}/{model}/seed{seed}")
            continue
        partial = cell_dir(folder / "cells", dataset, model, seed).with_suffix(".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for files, source in ((CELL_FILES_FROM_EVALUATION, "evals"), (CELL_FILES_FROM_TRAINING, "models")):
            for file in files:
                shutil.copy(cell_dir(run / source, dataset, model, seed) / file, partial / file)
        partial.rename(cell_dir(folder / "cells", dataset, model, seed))  # a cell is kept whole or not at all
        kept += 1
    print(f"kept {kept} cells in {folder / 'cells'} ({len(changed & set(todo))} in dvc.lock but not up to date)")
    if skipped:
        raise SystemExit(f"{len(skipped)} cells were measured with other feature networks than the kept ones "
                         f"(e.g. {skipped[0]}): run `restore` before a part, then that part again")


def copy_whole(source: Path, target: Path) -> None:
    """Copy a folder so that `target` appears complete or not at all."""
    partial = target.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial)
    partial.rename(target)


def restore(folder: Path, run: Path) -> None:
    """Put the kept classifier/autoencoder folders into `run` and record them in its dvc.lock."""
    params = load_params(run / "params.yaml")
    networks = kept_networks(folder)
    for dataset in params.grid.datasets:
        if dataset not in networks:
            print(f"{dataset}: no kept feature networks yet; this part trains them")
            continue
        prepare(run, dataset)  # train_classifier's input, for its lock entry
        shutil.rmtree(run / "classifiers" / dataset, ignore_errors=True)
        copy_whole(folder / "classifiers" / dataset, run / "classifiers" / dataset)
        errors = dvc_commit(run, [f"train_classifier@{dataset}"])
        if errors:
            raise SystemExit("\n".join(errors))
        recorded = lock_stages(run)[f"train_classifier@{dataset}"]["outs"][0]["md5"]
        if recorded != networks[dataset]:
            raise SystemExit(f"{dataset}: the restored classifiers hash to {recorded}, "
                             f"{folder / 'classifiers.json'} says {networks[dataset]}")
        print(f"{dataset}: kept feature networks restored ({recorded})")


def prepare(run: Path, dataset: str) -> None:
    """`dvc repro` of the dataset's prepare stage in `run`, its command finding this interpreter's
    `python` (as `make` sets PATH)."""
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    subprocess.run([dvc_executable(), "repro", "--single-item", f"prepare@{dataset}"], cwd=run, check=True, env=env)


def todo(folder: Path, run: Path) -> None:
    """The cells not kept yet, a `pipeline grid` command per seed."""
    params = load_params(run / "params.yaml")
    missing: dict[int, list[str]] = {}
    for dataset, model, seed in grid_cells(params):
        if not cell_dir(folder / "cells", dataset, model, seed).exists():
            missing.setdefault(seed, []).append(model)
    total = len(grid_cells(params))
    print(f"{total - sum(map(len, missing.values()))} of {total} cells kept")
    grid = "python -m pipeline grid"
    for seed, models in missing.items():
        whole = len(models) == len(params.grid.evaluate)
        print(f"{grid} --no-aggregate --seeds {seed}" + ("" if whole else " --models " + " ".join(models)))


def table(folder: Path, run: Path) -> None:
    """<folder>/metrics/ (results.parquet, summary.json, table.md, papers/) and <folder>/cells.csv."""
    from pipeline import report

    params = load_params(run / "params.yaml")
    cells = [c for c in grid_cells(params) if (cell_dir(folder / "cells", *c) / "metrics.parquet").exists()]
    if not cells:
        raise SystemExit(f"no kept cells under {folder / 'cells'}: run a part and `keep` first")
    report.aggregate([cell_dir(folder / "cells", *c) / "metrics.parquet" for c in cells], folder / "metrics",
                     params.grid.evaluate)
    rows = io.StringIO()
    out = csv.writer(rows, lineterminator="\n")
    out.writerow(["dataset", "model", "seed", "cpu", "threads", "autocast", "channels_last", "iterations",
                  "wall_time_s", "git_rev"])
    for dataset, model, seed in cells:
        run_json = json.loads((cell_dir(folder / "cells", dataset, model, seed) / "run.json").read_text())
        train = run_json["train"]
        out.writerow([dataset, model, seed, run_json["cpu"], run_json["threads"], train["autocast"],
                      train["channels_last"], train["iterations"], run_json["wall_time_s"], run_json["git_rev"]])
    atomic_write_text(folder / "cells.csv", rows.getvalue())
    print(f"{len(cells)} of {len(grid_cells(params))} cells -> {folder / 'metrics'}, {folder / 'cells.csv'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["todo", "restore", "keep", "table"])
    p.add_argument("folder", type=Path, help="the kept cells' folder, e.g. docs/cpu_long")
    p.add_argument("--run", type=Path, default=Path("."), help="the clone that runs the parts (default: here)")
    args = p.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    {"todo": todo, "restore": restore, "keep": keep, "table": table}[args.command](args.folder.resolve(),
                                                                                   args.run.resolve())


if __name__ == "__main__":
    main()
