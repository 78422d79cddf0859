"""A grid spread over hosts: each stage is its own run, taken by whichever host is free.

The host that plans the grid (and aggregates it) starts a run per stage once the stages it
depends on have finished (`run_remotely`), through a `Launcher` (flows.py gives Prefect's:
a flow run of the stage deployment in the work pool). A run whose host is lost (its flow run
marked Crashed) or that fails is started again, on whichever host is free, up to
`orchestration.retries` times; after that its cells get `failed` rows and every other stage
goes on. On the host that takes it, a stage run (`run_stage_here`) holds the stage's lock (two
hosts never run one stage at once), pulls what it depends on from the DVC remote, skips the
stage if its published outputs are still current, downloads the resume state pushed by an
earlier attempt, runs the stage on a free device slot while its checkpoints are pushed, and
publishes its outputs (pipeline/remote.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Protocol

from pipeline.config import Params
from pipeline.devices import HostSlots
from pipeline.execute import execute_stage
from pipeline.plan import StageCall, changed_here, plan_grid, plan_stage, source_hashes
from pipeline.remote import SLOTS_DIR, SharedRemote, pushing_checkpoints
from pipeline.schema import require
from pipeline.sections import OrchestrationConfig

FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")  # Prefect's final state types
SKIPPED = "Skipped"  # name of the Completed state of a stage run that found the stage current


@dataclass(frozen=True)
class RunState:
    """A stage run as the launcher sees it: kind (SCHEDULED, PENDING, RUNNING or one of FINAL),
    the state's name (Completed / Skipped / ...), its message, seconds since it was entered."""

    kind: str
    name: str = ""
    message: str = ""
    since_s: float = 0.0


class Launcher(Protocol):
    def start(self, call: StageCall, attempt: int) -> str:
        """Start a run of the stage on whichever host is free; its run id."""

    def states(self, run_ids: list[str]) -> dict[str, RunState]:
        """The current state of each run."""

    def mark_lost(self, run_id: str, reason: str) -> None:
        """End a run whose host was lost (its state becomes Crashed)."""


def row(call: StageCall, status: str, **extra) -> dict:
    return {"stage": call.name, "label": call.label, "status": status, "time_s": 0.0, **extra}


def run_remotely(calls: list[StageCall], launcher: Launcher, retries: int, lost_after_s: float,
                 log: Callable[[str], None], poll_s: float = 2.0) -> dict[str, dict]:
    """Run every stage of `calls` (upstream first) through `launcher`, each once the stages it
    depends on have finished; a failed or crashed run is started again up to `retries` times.
    A run still pending (taken by a worker, not started) after `lost_after_s` lost its host.
    Returns a summary row per stage: done / skipped / failed (with the error) / not run."""
    names = {c.name for c in calls}
    results = {c.name: row(c, "skipped") for c in calls if c.up_to_date}
    attempts: dict[str, int] = {}
    running: dict[str, tuple[StageCall, float]] = {}

    def start(call: StageCall) -> None:
        attempts[call.name] = attempts.get(call.name, 0) + 1
        run_id = launcher.start(call, attempts[call.name])
        running[run_id] = (call, time.monotonic())
        log(f"{call.label}: started run {run_id} (attempt {attempts[call.name]})")

    while len(results) < len(calls):
        busy = {c.name for c, _ in running.values()}
        for call in calls:  # upstream first: a failure propagates down in one pass
            if call.name in results or call.name in busy:
                continue
            ups = [results.get(u) for u in call.upstream if u in names]
            broken = next((u for u in call.upstream if u in names and results.get(u, {}).get("status")
                           in ("failed", "not run")), None)
            if broken:
                results[call.name] = row(call, "not run", error=f"upstream {broken} did not finish")
            elif all(ups):
                start(call)
        for run_id, state in launcher.states(list(running)).items():
            call, t0 = running[run_id]
            if state.kind in FINAL:
                del running[run_id]
                if state.kind == "COMPLETED":
                    results[call.name] = row(call, "skipped" if state.name == SKIPPED else "done", run_id=run_id,
                                             time_s=round(time.monotonic() - t0, 2))
                elif state.kind != "CANCELLED" and attempts[call.name] <= retries:
                    log(f"{call.label}: run {run_id} {state.kind.lower()} ({state.message}); starting it again")
                    start(call)
                else:
                    results[call.name] = row(call, "failed", run_id=run_id,
                                             error=f"{state.kind.lower()}: {state.message}")
            elif state.kind == "PENDING" and state.since_s > lost_after_s:
                launcher.mark_lost(run_id, f"pending for {state.since_s:.0f} s: its host was lost before it started")
        if len(results) < len(calls):
            time.sleep(poll_s)
    return results


def plan_spread(root: Path, params: Params, remote: SharedRemote, datasets: list[str] | None,
                seeds: list[int] | None, models: list[str] | None, aggregate: bool,
                log: Callable[[str], None]) -> list[StageCall]:
    """plan_grid with the remote's records: a stage not current here takes its published
    record into dvc.lock (available to pull), and a stage current here but not published is
    published first, so that any host can pull it."""
    from dvc.repo import Repo

    records = remote.records()
    with Repo(str(root)) as repo:
        known = {s.name for s in repo.index.graph.nodes} & set(records)
        stale = changed_here(repo, known) if known else set()
    remote.merge_records({n: records[n] for n in stale})
    calls = plan_grid(root, params, datasets, seeds, models, aggregate, available=set(records))
    for call in calls:
        if call.up_to_date and call.name not in records:
            remote.publish(call.name, {"published": "outputs current on the planning host"})
            log(f"{call.label}: current here, published to {remote.url}")
    return calls


def check_sources(root: Path, name: str, expected: dict[str, str] | None) -> None:
    """The stage's code and params hashes here must equal the planning host's."""
    if expected is None:
        return
    here = source_hashes(root, [name])[name]
    differ = sorted(p for p in set(here) | set(expected) if here.get(p) != expected.get(p))
    require(not differ, f"{root}", f"differs from the planning host in {differ} (stage {name}): check out the same "
            "commit and params file on every host")


def run_stage_here(root: Path, name: str, orch: OrchestrationConfig, sources: dict[str, str] | None,
                   lock: Callable[[str], ContextManager], log: Callable[[str], None], run_id: str = "") -> dict:
    """Run stage `name` on this host as one run of a spread grid; returns its summary row
    (status done or skipped, seconds, device, host, the checkpoint step it resumed from)."""
    check_sources(root, name, sources)
    remote = SharedRemote(root)
    with lock(name):
        remote.pull_dependencies(name, log)
        record = remote.read_record(name)
        if record is not None:
            remote.merge_records({name: record})
        call = plan_stage(root, name, available=record is not None)
        if call.up_to_date:
            log(f"{call.label}: current in the DVC remote (run on {record['ran_on']}), skipped")
            return row(call, "skipped", host=record["ran_on"])
        resume = remote.pull_resume_state(name)
        step = newest_step(root, resume)
        if resume:
            log(f"{call.label}: resuming from step {step} pushed to the DVC remote" if step else
                f"{call.label}: no checkpoint in the DVC remote, starting from step 0")
        with pushing_checkpoints(remote, resume, log):
            result = execute_stage(call, str(root), HostSlots.detect(orch, root / SLOTS_DIR), orch.inline_on_cpu, log)
        record = remote.publish(name, {"device": result["device"], "time_s": result["time_s"],
                                       "resumed_from": step, "flow_run": run_id})
        log(f"{call.label}: published to {remote.url}")
        return {**result, "host": record["ran_on"], "resumed_from": step}


def newest_step(root: Path, paths: list[str]) -> int:
    """The newest checkpoint step in the resume-state folders (0 if none)."""
    from pipeline.training import CheckpointStore

    return max([CheckpointStore(root / p, keep=1).newest_iteration() for p in paths if (root / p).is_dir()] or [0])
