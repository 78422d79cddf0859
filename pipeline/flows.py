"""Prefect flows of the grid: the stages of dvc.yaml as Prefect tasks on one host, or as flow
runs spread over every host of a work pool.

The flows compose library functions and hold no logic of their own. DVC resolves dvc.yaml
(pipeline/plan.py: the grid in params.yaml, the commands, their paths and the graph); each
stage runs its own command (pipeline/execute.py), the same `python -m stages.<stage>` entry
point `dvc repro` runs, on a device slot (pipeline/devices.py). What the flows add:

- concurrency: every stage waits only for its upstream stages (a dataset is prepared once, a
  VAE export is shared by every stage-2 model built on it, the classifier is trained once per
  dataset, evaluate waits for its training, aggregate comes last);
- one host (`spread: false`): the stages are tasks of the grid's flow run, one per device slot
  of this host; at the end every stage that ran is recorded in one `dvc commit`;
- every host (`spread: true`, the `grid/nightly-grid` deployment): each stage is a flow run of
  `stage/one-stage` taken by whichever worker of the pool is free, outputs shared through the
  DVC remote; a run whose host is lost is run again elsewhere from its pushed checkpoint
  (pipeline/hosts.py, pipeline/remote.py, pipeline/prefect_runs.py); the aggregating host (the
  one running the grid's flow run) pulls every output, aggregates and records it all;
- faults: a failing stage is retried (`orchestration.retries`), then its cells get a `failed`
  metrics row with the error (run.record_failed_cell) while every other cell goes on;
- stages DVC reports up to date (and whose upstream stages are too) are skipped.

Entry points: `grid_flow` (deployment `nightly-grid`), `cell_flow` (one dataset/model/seed
with what it needs), `stage_flow` (one stage on one host of a spread grid) and
`python -m pipeline grid`.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.runtime import flow_run
from prefect.states import Completed

from pipeline import hosts, prefect_runs
from pipeline.config import load_params
from pipeline.devices import DevicePool
from pipeline.execute import dvc_commit, execute_stage
from pipeline.plan import (EVALUATE_STAGE, StageCall, after_aggregate, first_failure, plan_grid, source_hashes,
                           with_aggregate_stale)
from pipeline.remote import SharedRemote
from pipeline.schema import require
from pipeline.sections import OrchestrationConfig

STAGE_DEPLOYMENT = "stage/one-stage"  # prefect.yaml: the stage flow, in the pool's `cells` work queue


class GridFailed(RuntimeError):
    """Some cells of the grid failed (the others finished); the message is the summary."""


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


def run_stages(calls: list[StageCall], root: Path, devices: DevicePool, orch: OrchestrationConfig) -> dict[str, dict]:
    """Submit every stage as a task of this flow run, each waiting for its upstream futures
    (stages outside `calls` have finished already); their outcomes."""
    futures = {}
    for call in calls:
        stage = run_stage.with_options(name=call.label, task_run_name=call.label, retries=orch.retries,
                                       retry_delay_seconds=orch.retry_delay_s)
        futures[call.name] = stage.submit(call, str(root), devices, orch.inline_on_cpu,
                                          wait_for=[futures[u] for u in call.upstream if u in futures])
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


def summary_table(rows: list[dict]) -> str:
    """Markdown table of every stage: status, seconds, device, host, error."""
    lines = ["| task | status | time_s | device | host | error |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['status']} | {r['time_s']:.1f} | {r.get('device', '')} | "
                     f"{r.get('host', '')} | {r.get('error', '')[:200]} |")
    return "\n".join(lines)


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


def run_spread(calls: list[StageCall], root: Path, params_file: str, orch: OrchestrationConfig,
               remote: SharedRemote, deployment: str) -> dict[str, dict]:
    """The cells' stages as flow runs on every worker of the pool; then their outputs pulled here."""
    log = get_run_logger().info
    prefect_runs.ensure_lost_run_automation(orch)
    todo = [c.name for c in calls if not c.up_to_date]
    launcher = prefect_runs.PrefectLauncher(deployment, params_file, source_hashes(root, todo))
    results = hosts.run_remotely(calls, launcher, orch.retries, orch.lost_after_s, log)
    finished = [n for n, r in results.items() if r["status"] in ("done", "skipped")]
    records = remote.records()
    for name in finished:
        results[name].update({k: records[name][k] for k in ("ran_on", "device", "time_s") if k in records.get(name, {})})
        results[name]["host"] = results[name].pop("ran_on", "")
    remote.pull_outputs(finished)
    log(f"pulled the outputs of {len(finished)} stages from {remote.url}")
    return results


def publish_here(results: dict[str, dict], remote: SharedRemote) -> list[str]:
    """Record and publish the stages run on this host; one error line per stage that could not be."""
    errors = []
    for name, r in results.items():
        if r["status"] == "done":
            try:
                remote.publish(name, {"device": r.get("device", ""), "time_s": r["time_s"]})
            except Exception as e:  # DVC or remote errors: reported in the summary, the grid still ends
                errors.append(f"publish {name}: {type(e).__name__}: {e}")
    return errors


def run_grid(root: Path, params_file: str, datasets: list[str] | None, seeds: list[int] | None,
             models: list[str] | None, aggregate: bool, spread: bool, deployment: str) -> dict:
    """Body of grid_flow / cell_flow (inside a flow): plan, cells, failures, then aggregate and
    what follows it on this host, DVC records, summary."""
    t0 = time.perf_counter()
    log = get_run_logger().info
    params = load_params(root / params_file)
    orch = params.orchestration
    remote = SharedRemote(root) if spread else None
    calls = (hosts.plan_spread(root, params, remote, datasets, seeds, models, aggregate, log) if spread
             else plan_grid(root, params, datasets, seeds, models, aggregate))
    devices = DevicePool.detect(orch)
    log(f"grid: {len(calls)} stages ({sum(c.up_to_date for c in calls)} up to date) " +
        (f"spread over the workers of {deployment}'s pool" if spread else
         f"on {len(devices.devices)} slot(s) {devices.devices}"))
    later = after_aggregate(calls)
    cells = [c for c in calls if c.name not in later]
    results = (run_spread(cells, root, params_file, orch, remote, deployment) if spread
               else run_stages(cells, root, devices, orch))
    record_failures(calls, results, root, params_file)
    cells_changed = any(r["status"] != "skipped" for r in results.values())  # a cell ran or failed: re-aggregate
    here = run_stages(with_aggregate_stale([c for c in calls if c.name in later], cells_changed), root, devices, orch)
    results.update(here)
    if spread:
        errors = publish_here(here, remote)
    else:
        errors = dvc_commit(root, [name for name, r in results.items() if r["status"] == "done"])
    for line in errors:
        get_run_logger().error(line)
    return report(calls, results, errors, time.perf_counter() - t0)


@flow(name="grid")
def grid_flow(datasets: list[str] | None = None, seeds: list[int] | None = None, models: list[str] | None = None,
              params_file: str = "params.yaml", root: str = ".", aggregate: bool = True, spread: bool = False,
              stage_deployment: str = STAGE_DEPLOYMENT) -> dict:
    """Train and evaluate the grid of params.yaml (or the selected part of it) and aggregate.

    datasets / seeds / models: the part of params.yaml's grid to run (None = all of it);
    params_file: params file, relative to root; root: the repository (its dvc.yaml, outputs
    and dvc.lock); aggregate: with no selection, run every stage of dvc.yaml, aggregate last
    (a selection runs only its cells and what they need; false = the cells only); spread:
    run each stage as a flow run of `stage_deployment` on whichever worker of its pool is free,
    sharing outputs through the DVC remote (false: every stage on this host). Returns the
    summary (counts per status, wall time, a row per stage); ends Failed when a cell failed,
    after the other cells finished and the failures were recorded.
    """
    return run_grid(Path(root).resolve(), params_file, datasets, seeds, models, aggregate, spread, stage_deployment)


@flow(name="cell")
def cell_flow(dataset: str, model: str, seed: int, params_file: str = "params.yaml", root: str = ".",
              spread: bool = False, stage_deployment: str = STAGE_DEPLOYMENT) -> dict:
    """One cell (dataset, model, seed) with the stages it needs (data, VAE export, classifier);
    no aggregate. spread / stage_deployment: as in grid_flow."""
    return run_grid(Path(root).resolve(), params_file, [dataset], [seed], [model], False, spread, stage_deployment)


@flow(name="stage")
def stage_flow(stage: str, params_file: str = "params.yaml", root: str = ".", sources: dict | None = None):
    """One stage of a spread grid on this host (hosts.run_stage_here), under the stage's lock.

    stage: its DVC address; params_file / root: as in grid_flow; sources: the planning host's
    hashes of the stage's code and params (None: not checked). Ends Completed, named Skipped
    when the DVC remote already holds the stage's current outputs."""
    root_path = Path(root).resolve()
    orch = load_params(root_path / params_file).orchestration
    prefect_runs.check_heartbeat(orch)
    log = get_run_logger().info
    result = hosts.run_stage_here(root_path, stage, orch, sources,
                                  lambda name: prefect_runs.stage_lock(name, orch, log), log, str(flow_run.id or ""))
    if result["status"] == "skipped":
        return Completed(name=hosts.SKIPPED, message=f"current in the DVC remote (run on {result['host']})")
    return result
