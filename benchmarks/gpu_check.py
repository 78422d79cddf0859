"""The GPU check: every paper's params file end to end on CUDA at toy size, with
`train.deterministic` false and true, in the stages dvc.yaml plans.

Preparing needs the project's venv (tests' raw-file writers, DVC's graph); running needs a
GPU and the runtime packages only (no DVC, no Prefect):

  python benchmarks/gpu_check.py prepare gpu_work   # tiny raw files in each dataset's official
                                                    # format, prepared; each paper's stage plan
  python benchmarks/gpu_check.py run gpu_work       # on the GPU machine: every planned stage

`run` executes each paper's planned stages after `prepare` in one process per paper and setting,
in process as the flow's inline slot does, and prints one line per stage (seconds, exit status,
the last lines of a failure) and the metric statuses of the table. The training step's speed is
`python -m pipeline --params params/avae.yaml bench` (its own command).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections import Counter, deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAPERS = ("avae", "alpha_gan", "lsr_gan", "avae_s")


def prepare(work: Path, papers: list[str]) -> None:
    """work/<paper>: a smoke repository with its datasets prepared, and work/<paper>.json: the
    stages after `prepare`, upstream first."""
    import pytest

    from pipeline.config import load_params
    from pipeline.execute import LineLog, run_in_process
    from pipeline.plan import plan_grid
    from tests.test_paper_files import smoke_repo

    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    for paper in papers:
        repo = work / paper
        if repo.exists():
            shutil.rmtree(repo)
        with pytest.MonkeyPatch.context() as patch:  # the tiny raw files' checksums pinned as the official ones
            smoke_repo(paper, repo, work / f"{paper}_raw", patch)
            calls = plan_grid(repo, load_params(repo / "params.yaml"))
            for call in (c for c in calls if c.stage == "prepare"):
                tail: deque[str] = deque(maxlen=30)
                code = run_in_process(list(call.argv), str(repo), LineLog(lambda line: None, tail))
                if code:
                    raise SystemExit(f"{paper}: {call.name} failed:\n" + "\n".join(tail))
        shutil.rmtree(work / f"{paper}_raw")
        shutil.rmtree(repo / "docs" / "cpu_long")  # kept results: no stage reads them
        plan = [{"name": c.name, "argv": list(c.argv)} for c in calls if c.stage != "prepare"]
        (work / f"{paper}.json").write_text(json.dumps(plan, indent=1))
        print(f"{paper}: {len(plan)} stages planned after {len(calls) - len(plan)} prepare stages")


def run_one(repo: Path, plan_file: Path, deterministic: bool) -> int:
    """Every planned stage of `repo` with train.deterministic set; the number that failed."""
    import pandas as pd
    import torch
    import yaml

    from pipeline.execute import LineLog, run_in_process

    params_path = repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["train"]["deterministic"] = deterministic
    params_path.write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    print(f"== {repo.name}, deterministic {deterministic}: torch {torch.__version__}, "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device'}", flush=True)
    failed = 0
    for stage in json.loads(plan_file.read_text()):
        tail: deque[str] = deque(maxlen=25)
        start = time.perf_counter()
        code = run_in_process(stage["argv"], str(repo), LineLog(lambda line: None, tail))
        print(f"{time.perf_counter() - start:7.1f} s  rc {code}  {stage['name']}", flush=True)
        if code:
            failed += 1
            print("    " + "\n    ".join(tail), flush=True)
    results = repo / "metrics" / "results.parquet"
    if results.exists():
        df = pd.read_parquet(results)
        print(f"metric statuses: {dict(Counter(df.status))}")
        bad = df[df.status == "failed"]
        for (metric, reason), n in Counter(zip(bad.metric, bad.reason)).most_common(10):
            print(f"    failed {metric} x{n}: {reason}")
    print(f"== {repo.name}, deterministic {deterministic}: {failed} stage(s) failed", flush=True)
    return failed


def run(work: Path, papers: list[str], settings: list[bool]) -> int:
    """Each paper and setting in its own process (cuBLAS reads its workspace setting once), on
    a fresh copy of the prepared repository; the number of runs with a failed stage."""
    failed_runs = 0
    for paper in papers:
        for deterministic in settings:
            copy = Path("/tmp/gpu_check") / f"{paper}-det{int(deterministic)}"
            if copy.exists():
                shutil.rmtree(copy)
            shutil.copytree(work / paper, copy, symlinks=True)
            cmd = [sys.executable, __file__, "run-one", str(copy), str((work / f"{paper}.json").resolve())]
            failed_runs += subprocess.run(cmd + (["--deterministic"] if deterministic else [])).returncode != 0
    return failed_runs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("prepare", "run"):
        s = sub.add_parser(name)
        s.add_argument("work", type=Path)
        s.add_argument("--papers", nargs="+", default=list(PAPERS), choices=PAPERS)
    sub.choices["run"].add_argument("--settings", nargs="+", default=["false", "true"], choices=["false", "true"],
                                    help="train.deterministic values to run (default: both)")
    s = sub.add_parser("run-one")
    s.add_argument("repo", type=Path)
    s.add_argument("plan", type=Path)
    s.add_argument("--deterministic", action="store_true")
    args = p.parse_args()
    if args.command == "prepare":
        prepare(args.work, args.papers)
        return 0
    if args.command == "run-one":
        return int(run_one(args.repo, args.plan, args.deterministic) > 0)
    return int(run(args.work, args.papers, [s == "true" for s in args.settings]) > 0)


if __name__ == "__main__":
    raise SystemExit(main())
