"""Prefect orchestration of the grid: the stages of dvc.yaml run as Prefect tasks.

The flow holds no logic of its own. Its tasks are the DVC stages themselves: DVC resolves
dvc.yaml (the grid in params.yaml, the commands, their paths and the dependency graph), and
each task runs one stage's command -- the same `python -m stages.<stage>` entry point that
`dvc repro` runs, so the same library call (pipeline/run.py) writes the same outputs. What the
flow adds is what DVC lacks for a grid:

- concurrency: every stage is submitted at once and waits only for its upstream stages
  (a dataset is prepared once, a VAE export is shared by every stage-2 model built on it, the
  classifier is trained once per dataset, evaluate waits for its training, aggregate comes last);
- devices: a `DevicePool` gives each running task one GPU (`CUDA_VISIBLE_DEVICES` of its
  process), `orchestration.cells_per_gpu` tasks per visible GPU (packed cells: several seeds'
  small networks share a GPU that one of them leaves mostly idle); a host without GPUs runs
  `orchestration.cpu_slots` tasks at a time (1 = the cells in sequence, then in the flow's own
  process with `orchestration.inline_on_cpu`, which saves an interpreter start-up per stage);
- faults: a failing stage is retried (`orchestration.retries`), then its cells get a `failed`
  metrics row with the error (run.record_failed_cell) while every other cell goes on;
- DVC bookkeeping once: stages that DVC reports up to date (and whose upstream stages are too)
  are skipped; interrupted training resumes from checkpoints/ (the training loop does that);
  at the end every stage that ran is recorded in one DVC session (`dvc commit -f`), so cells run
  concurrently without DVC lock conflicts and `dvc status` is clean afterwards.

Entry points: `grid_flow` (deployment `nightly-grid` in prefect.yaml), `cell_flow` (one
dataset/model/seed with what it needs) and `python -m pipeline grid`.
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import runpy
import shlex
import subprocess
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait

from pipeline.config import OrchestrationConfig, Params, load_params, require

EVALUATE_STAGE = "evaluate"  # dvc.yaml: the per-cell stage whose output holds the cell's metrics
AGGREGATE_STAGE = "aggregate"  # dvc.yaml: the stage that tabulates every cell


class StageFailed(RuntimeError):
    """A stage's command exited with an error; the message carries its last output lines."""


class GridFailed(RuntimeError):
    """Some cells of the grid failed (the others finished); the message is the summary."""


@dataclass(frozen=True)
class StageCall:
    """One DVC stage of the grid, as the flow runs it.

    name: DVC address (`train@fashion_mnist-avae_b-0`); stage: its dvc.yaml stage
    (`train`); argv: its command from dvc.yaml; upstream: addresses of the stages it depends
    on; dataset / model / seed: the cell it belongs to, read from the command's positional
    arguments (None where the stage has none); up_to_date: DVC reports it unchanged.
    """

    name: str
    stage: str
    argv: tuple[str, ...]
    upstream: tuple[str, ...]
    dataset: str | None
    model: str | None
    seed: int | None
    up_to_date: bool

    @property
    def label(self) -> str:
        """Task name: `train avae_b/fashion_mnist/seed3`, `prepare toy2d`, `aggregate`."""
        if self.model is not None:
            return f"{self.stage} {self.model}/{self.dataset}/seed{self.seed}"
        return f"{self.stage} {self.dataset}" if self.dataset else self.stage

    def option(self, flag: str) -> str | None:
        """The value of `flag` (e.g. `--out`) in the stage's command."""
        argv = list(self.argv)
        return argv[argv.index(flag) + 1] if flag in argv[:-1] else None


def stage_cell(argv: list[str]) -> tuple[str | None, str | None, int | None]:
    """(dataset, model, seed) from a stage command `python -m stages.X [dataset [model seed]] --opts`."""
    start = argv.index("-m") + 2 if "-m" in argv else 2
    positional = []
    for token in argv[start:]:
        if token.startswith("-"):
            break
        positional.append(token)
    dataset = positional[0] if positional else None
    model = positional[1] if len(positional) > 1 else None
    seed = int(positional[2]) if len(positional) > 2 else None
    return dataset, model, seed


def grid_models(params: Params) -> list[str]:
    """Every model the grid trains or evaluates, in params order."""
    return params.grid.models


def check_selection(params: Params, datasets: list[str], seeds: list[int], models: list[str]) -> None:
    """A selection must lie inside params.yaml's grid: dvc.yaml has stages for nothing else."""
    g = params.grid
    for key, chosen, allowed in (("grid.datasets", datasets, g.datasets), ("grid.seeds", seeds, g.seeds),
                                 ("grid models", models, grid_models(params))):
        outside = [x for x in chosen if x not in allowed]
        require(not outside, key, f"does not contain {outside} (allowed: {list(allowed)}); dvc.yaml has "
                "stages only for the grid in params.yaml: add them there first")


def plan_grid(root: str | Path, params: Params, datasets: list[str] | None = None,
              seeds: list[int] | None = None, models: list[str] | None = None,
              aggregate: bool = True) -> list[StageCall]:
    """The DVC stages of the selected cells and everything upstream of them, upstream first.

    A cell is selected when its dataset, model and seed are all selected (None = every one
    of params.yaml's grid). With no selection at all and `aggregate`, every stage of dvc.yaml
    is planned, as `dvc repro` would run them: the aggregate stage (last) and stages outside
    the grid such as `toy`; a selection never aggregates (the table covers the whole grid).
    Each call says whether `dvc status` reports it unchanged.
    """
    import networkx as nx
    from dvc.repo import Repo

    whole = datasets is None and seeds is None and models is None and aggregate
    datasets = list(params.grid.datasets if datasets is None else datasets)
    seeds = list(params.grid.seeds if seeds is None else seeds)
    models = list(grid_models(params) if models is None else models)
    check_selection(params, datasets, seeds, models)
    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        by_name = {s.name: s for s in graph.nodes}
        cells = {name: stage_cell(shlex.split(s.cmd)) for name, s in by_name.items()}
        chosen = {name for name, (d, m, k) in cells.items()
                  if m is not None and d in datasets and m in models and k in seeds}
        needed = set(chosen)
        for name in chosen:
            needed |= {s.name for s in nx.descendants(graph, by_name[name])}
        if whole:
            needed = set(by_name)
        changed = {address.rsplit(":", 1)[-1] for address in repo.status(targets=[target(root, n) for n in needed])}
        calls = []
        for stage in reversed(list(nx.topological_sort(graph))):
            name = stage.name
            if name not in needed:
                continue
            upstream = tuple(sorted(s.name for s in graph.successors(stage) if s.name in needed))
            d, m, k = cells[name]
            calls.append(StageCall(name=name, stage=name.split("@")[0], argv=tuple(shlex.split(stage.cmd)),
                                   upstream=upstream, dataset=d, model=m, seed=k, up_to_date=name not in changed))
    return upstream_freshness(calls)


def upstream_freshness(calls: list[StageCall]) -> list[StageCall]:
    """A stage is up to date only when every stage upstream of it is too (dvc repro's rule:
    DVC's status cannot know that an upstream stage about to run will change its outputs)."""
    fresh: dict[str, bool] = {}
    out = []
    for call in calls:  # upstream first; stages outside `calls` were settled before
        fresh[call.name] = call.up_to_date and all(fresh.get(u, True) for u in call.upstream)
        out.append(StageCall(**{**call.__dict__, "up_to_date": fresh[call.name]}))
    return out


class DevicePool:
    """Slots for concurrent tasks: one per GPU id (the task's CUDA_VISIBLE_DEVICES), or
    `cpu_slots` slots without a GPU (None: the task sees no GPU setting of ours)."""

    def __init__(self, devices: list[str | None]):
        require(len(devices) >= 1, "orchestration.devices", "leaves no device to run on")
        self.devices = list(devices)
        self._free: queue.Queue = queue.Queue()
        for d in self.devices:
            self._free.put(d)

    @classmethod
    def detect(cls, cfg: OrchestrationConfig) -> "DevicePool":
        """`devices: auto` = every GPU this host shows (CUDA_VISIBLE_DEVICES respected)."""
        if cfg.devices != "auto":
            ids = [d.strip() for d in cfg.devices.split(",") if d.strip()]
        elif (visible := os.environ.get("CUDA_VISIBLE_DEVICES")) is not None:
            ids = [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
        else:
            import torch

            ids = [str(i) for i in range(torch.cuda.device_count())]
        # cells_per_gpu slots per GPU, interleaved so that the first tasks spread over every GPU
        return cls([d for _ in range(cfg.cells_per_gpu) for d in ids] or [None] * cfg.cpu_slots)

    @contextlib.contextmanager
    def acquire(self) -> Iterator[str | None]:
        """Block until a slot is free; yield its GPU id (None on a CPU slot)."""
        device = self._free.get()
        try:
            yield device
        finally:
            self._free.put(device)


def stage_command(call: StageCall) -> list[str]:
    """The stage's command with `python` bound to this interpreter (the worker's environment)."""
    argv = list(call.argv)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


class LineLog(io.TextIOBase):
    """A text stream that hands each finished line to `log` (tqdm's \r redraws: the last one)."""

    def __init__(self, log: Callable[[str], None], tail: deque):
        self.log, self.tail, self.buffer = log, tail, ""

    def write(self, text: str) -> int:
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            line = line.split("\r")[-1].rstrip()
            if line:
                self.tail.append(line)
                self.log(line)
        return len(text)

    def flush(self) -> None:
        if self.buffer.strip():
            self.write("\n")


def run_in_process(argv: list[str], root: str, out: LineLog) -> int:
    """Run `python -m <module> args` in this interpreter (no start-up cost); its exit status."""
    require(len(argv) >= 3 and argv[1] == "-m", "dvc.yaml cmd", f"{shlex.join(argv)} is not `python -m <module> ...`")
    saved = sys.argv, os.getcwd()
    sys.argv = [argv[2], *argv[3:]]
    os.chdir(root)
    if root not in sys.path:  # `python -m` would put the working directory first
        sys.path.insert(0, root)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            runpy.run_module(argv[2], run_name="__main__", alter_sys=False)
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception:  # as the interpreter would: the traceback on stderr, status 1
        out.write(traceback.format_exc())
        return 1
    finally:
        out.flush()
        sys.argv = saved[0]
        os.chdir(saved[1])


def execute_stage(call: StageCall, root: str, devices: DevicePool, inline_on_cpu: bool,
                  log: Callable[[str], None]) -> dict:
    """Run one stage's command on a free slot: in its own process with CUDA_VISIBLE_DEVICES
    set to the slot's GPU, or, on the single CPU slot of a host without GPUs and with
    `inline_on_cpu`, in this process. Raises StageFailed on a non-zero exit status."""
    if call.up_to_date:
        log(f"{call.label}: up to date ({call.name}), skipped")
        return {"stage": call.name, "label": call.label, "status": "skipped", "time_s": 0.0, "device": ""}
    with devices.acquire() as device:
        inline = device is None and inline_on_cpu and len(devices.devices) == 1
        where = f"GPU {device}" if device is not None else "CPU" + (" (in process)" if inline else "")
        log(f"{call.label}: running on {where}: {shlex.join(call.argv)}")
        tail: deque[str] = deque(maxlen=15)
        out = LineLog(lambda line: log(f"{call.label} | {line}"), tail)
        t0 = time.perf_counter()
        if inline:
            code = run_in_process(list(call.argv), root, out)
        else:
            env = dict(os.environ)
            if device is not None:
                env["CUDA_VISIBLE_DEVICES"] = device
            with subprocess.Popen(stage_command(call), cwd=root, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
                for line in proc.stdout:
                    out.write(line)
                code = proc.wait()
            out.flush()
        seconds = time.perf_counter() - t0
    if code != 0:
        raise StageFailed(f"{call.name} exited with status {code}: " + " / ".join(list(tail)[-3:]))
    log(f"{call.label}: done in {seconds:.1f} s")
    return {"stage": call.name, "label": call.label, "status": "done", "time_s": round(seconds, 2),
            "device": device or "cpu"}


@task(cache_policy=NO_CACHE)
def run_stage(call: StageCall, root: str, devices: DevicePool, inline_on_cpu: bool) -> dict:
    """Prefect task: one DVC stage (execute_stage), logged to the task run."""
    return execute_stage(call, root, devices, inline_on_cpu, get_run_logger().info)


@task(cache_policy=NO_CACHE)
def record_failed_cell(root: str, params_file: str, call: StageCall, failed_stage: str, error: str) -> None:
    """Write the failed cell's metrics row where its evaluate stage writes (run.record_failed_cell)."""
    from pipeline import run

    out = call.option("--out")
    require(out is not None, f"dvc.yaml stage {call.stage}", "has no --out option for the cell's metrics")
    params = load_params(Path(root) / params_file)
    run.record_failed_cell(params, call.dataset, call.model, call.seed, Path(root) / out, failed_stage, error)
    get_run_logger().warning(f"{call.label}: recorded as failed ({failed_stage}: {error})")


def target(root: Path, name: str) -> str:
    """A DVC target for stage `name` of root/dvc.yaml, whatever the working directory."""
    return f"{Path(root) / 'dvc.yaml'}:{name}"


def dvc_commit(root: Path, names: list[str]) -> list[str]:
    """Record the stages' current deps and outputs in dvc.lock, once for the whole grid;
    returns one error line per stage DVC refused."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    errors = []
    with Repo(str(root)) as repo:
        for name in names:
            try:
                repo.commit(target(root, name), force=True)
            except DvcException as e:
                errors.append(f"dvc commit {name}: {e}")
    return errors


def outcome(future) -> dict:
    """A finished task's result, or why it has none (failed, or not run: upstream failed)."""
    state = future.state
    if state.is_completed():
        return future.result()
    if state.is_failed() or state.is_crashed():
        error = future.result(raise_on_failure=False)
        return {"status": "failed", "time_s": 0.0, "error": str(error) if isinstance(error, BaseException)
                else (state.message or state.name)}
    return {"status": "not run", "time_s": 0.0, "error": state.message or state.name}


def summary_table(rows: list[dict]) -> str:
    """Markdown table of every stage: status, seconds, device, error."""
    lines = ["| task | status | time_s | device | error |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['status']} | {r['time_s']:.1f} | {r.get('device', '')} | "
                     f"{r.get('error', '')[:200]} |")
    return "\n".join(lines)


def first_failure(name: str, calls: dict[str, StageCall], results: dict[str, dict]) -> tuple[str, str] | None:
    """The failed stage behind `name` (itself or upstream), with its error."""
    if results[name]["status"] == "failed":
        return name, results[name]["error"]
    for up in calls[name].upstream:
        found = first_failure(up, calls, results)
        if found:
            return found
    return None


def stage_task(call: StageCall, orch: OrchestrationConfig):
    """run_stage named after the cell (`train avae_b/fashion_mnist/seed3`), with the retries of params."""
    return run_stage.with_options(name=call.label, task_run_name=call.label, retries=orch.retries,
                                  retry_delay_seconds=orch.retry_delay_s)


def after_aggregate(calls: list[StageCall]) -> set[str]:
    """aggregate and every stage downstream of it (e.g. report): they run once the cells have
    finished and their failures are recorded."""
    later = {c.name for c in calls if c.name == AGGREGATE_STAGE}
    for call in calls:  # upstream first
        if later & set(call.upstream):
            later.add(call.name)
    return later


def run_stages(calls: list[StageCall], root: Path, devices: DevicePool, orch: OrchestrationConfig) -> dict[str, dict]:
    """Submit every stage at once, each waiting for its upstream futures (stages outside
    `calls` have finished already); their outcomes."""
    futures = {}
    for call in calls:
        futures[call.name] = stage_task(call, orch).submit(
            call, str(root), devices, orch.inline_on_cpu, wait_for=[futures[u] for u in call.upstream if u in futures])
    wait(list(futures.values()))
    labels = {c.name: c.label for c in calls}
    return {name: {"stage": name, "label": labels[name], **outcome(f)} for name, f in futures.items()}


def record_failures(calls: list[StageCall], results: dict[str, dict], root: Path, params_file: str) -> None:
    """A `failed` metrics row for every cell whose evaluation did not happen, naming the stage that failed."""
    by_name = {c.name: c for c in calls}
    for call in calls:
        if call.stage == EVALUATE_STAGE and results[call.name]["status"] not in ("done", "skipped"):
            stage, error = first_failure(call.name, by_name, results) or (call.name, results[call.name]["error"])
            record_failed_cell.with_options(task_run_name=f"record failed {call.label.split(' ', 1)[1]}")(
                str(root), params_file, call, stage, error)


def report(calls: list[StageCall], results: dict[str, dict], commit_errors: list[str], wall: float) -> dict:
    """Log the summary (counts, a row per stage with its time), keep it as the `grid-summary`
    artifact; raise GridFailed when a stage failed or could not be recorded."""
    counts = {s: sum(r["status"] == s for r in results.values()) for s in ("done", "skipped", "failed", "not run")}
    rows = [results[c.name] for c in calls if c.name in results]
    table = summary_table(rows)
    text = (f"grid: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed, "
            f"{counts['not run']} not run (upstream failed) in {wall:.1f} s; dvc.lock updated for "
            f"{counts['done'] - len(commit_errors)} stages")
    get_run_logger().info(text + "\n" + table)
    create_markdown_artifact(f"{text}\n\n{table}\n", key="grid-summary", description="cells done/failed/skipped")
    if counts["failed"] or counts["not run"] or commit_errors:
        raise GridFailed(text + "\n" + "\n".join([f"{r['label']}: {r.get('error', '')}" for r in rows
                                                  if r["status"] == "failed"] + commit_errors))
    return {"counts": counts, "wall_s": round(wall, 2), "stages": rows}


def run_grid(root: Path, params_file: str, datasets: list[str] | None, seeds: list[int] | None,
             models: list[str] | None, aggregate: bool) -> dict:
    """Body of grid_flow / cell_flow (inside a flow): plan, cells, failures, then aggregate and
    what follows it, one DVC commit, summary."""
    t0 = time.perf_counter()
    params = load_params(root / params_file)
    calls = plan_grid(root, params, datasets, seeds, models, aggregate)
    devices = DevicePool.detect(params.orchestration)
    get_run_logger().info(f"grid: {len(calls)} stages ({sum(c.up_to_date for c in calls)} up to date) on "
                          f"{len(devices.devices)} slot(s) {devices.devices}")
    later = after_aggregate(calls)
    results = run_stages([c for c in calls if c.name not in later], root, devices, params.orchestration)
    record_failures(calls, results, root, params_file)
    cells_changed = any(r["status"] != "skipped" for r in results.values())  # a cell ran or failed: re-aggregate
    rest = upstream_freshness([StageCall(**{**c.__dict__, "up_to_date": c.up_to_date and not (
        cells_changed and c.name == AGGREGATE_STAGE)}) for c in calls if c.name in later])
    results.update(run_stages(rest, root, devices, params.orchestration))
    commit_errors = dvc_commit(root, [name for name, r in results.items() if r["status"] == "done"])
    for line in commit_errors:
        get_run_logger().error(line)
    return report(calls, results, commit_errors, time.perf_counter() - t0)


@flow(name="grid")
def grid_flow(datasets: list[str] | None = None, seeds: list[int] | None = None, models: list[str] | None = None,
              params_file: str = "params.yaml", root: str = ".", aggregate: bool = True) -> dict:
    """Train and evaluate the grid of params.yaml (or the selected part of it) and aggregate.

    datasets / seeds / models: the part of params.yaml's grid to run (None = all of it);
    params_file: params file, relative to root; root: the repository (its dvc.yaml, outputs
    and dvc.lock); aggregate: with no selection, run every stage of dvc.yaml, aggregate last
    (a selection runs only its cells and what they need; false = the cells only). Returns the summary
    (counts per status, wall time, a row per stage); ends Failed when a cell failed, after
    the other cells finished and the failures were recorded.
    """
    return run_grid(Path(root).resolve(), params_file, datasets, seeds, models, aggregate)


@flow(name="cell")
def cell_flow(dataset: str, model: str, seed: int, params_file: str = "params.yaml", root: str = ".") -> dict:
    """One cell (dataset, model, seed) with the stages it needs (data, VAE export, classifier);
    no aggregate."""
    return run_grid(Path(root).resolve(), params_file, [dataset], [seed], [model], aggregate=False)

