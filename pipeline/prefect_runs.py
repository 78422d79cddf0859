"""What a spread grid needs from a Prefect server: stage runs in the work pool, a lock per stage
that holds across hosts, and lost hosts detected.

- Stage runs: `PrefectLauncher` starts a flow run of the stage deployment (prefect.yaml:
  `stage/one-stage`, work queue `cells`) per stage, linked to the grid's flow run, and reads
  their states.
- The stage lock is a Prefect global concurrency limit of one slot per stage, held with a lease:
  its holder renews the lease while it runs; if the holder's host dies, the server frees the
  slot when the lease runs out (at most `max(60, orchestration.lost_after_s)` seconds: Prefect's
  minimum lease is 60 s). It lives on the server every host already talks to and needs nothing
  from the DVC remote, whose backends (s3, ssh, a folder) have no common atomic
  create-if-absent to build a lock on; a holder that cannot renew its lease stops its stage.
- Lost hosts: a stage flow run sends a heartbeat event every PREFECT_FLOWS_HEARTBEAT_FREQUENCY
  seconds; a Prefect automation marks a stage run Crashed when no heartbeat came for
  `orchestration.lost_after_s` (Prefect's documented zombie-flow detection), and the grid run
  starts the stage again on another host. `python -m pipeline worker` starts a worker with a
  heartbeat frequency that fits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Callable, Iterator
from uuid import UUID

from pipeline.hosts import RunState
from pipeline.plan import StageCall
from pipeline.schema import require
from pipeline.sections import OrchestrationConfig

STAGE_TAG = "dvc-stage"  # tag of every stage flow run; the lost-run automation matches it
LOCK_PREFIX = "dvc-stage:"  # global concurrency limit of a stage: LOCK_PREFIX + its DVC address
AUTOMATION = "dvc-stage: crash silent stage runs"
MIN_HEARTBEAT_S = 30  # Prefect's lowest PREFECT_FLOWS_HEARTBEAT_FREQUENCY
MIN_LEASE_S = 60  # Prefect's shortest concurrency lease
PAGE = 200  # flow runs per API read (the server's default limit)


def heartbeat_s(cfg: OrchestrationConfig) -> int:
    """The heartbeat period a worker's stage runs need: three per `lost_after_s`, at least Prefect's 30 s."""
    return max(MIN_HEARTBEAT_S, int(cfg.lost_after_s // 3))


def lease_s(cfg: OrchestrationConfig) -> float:
    """The stage lock's lease: a lost holder's lock is free again by the time its run is marked Crashed."""
    return max(MIN_LEASE_S, cfg.lost_after_s)


def check_heartbeat(cfg: OrchestrationConfig) -> None:
    """A stage run whose heartbeats are rarer than lost_after_s / 1.5 would be marked Crashed while alive."""
    from prefect.settings import get_current_settings

    period = get_current_settings().flows.heartbeat_frequency
    require(period is not None and period * 1.5 <= cfg.lost_after_s, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY",
            f"= {period} on this worker is too rare for orchestration.lost_after_s = {cfg.lost_after_s}: start the "
            f"worker with `python -m pipeline worker` (sets it to {heartbeat_s(cfg)})")


def worker_command(pool: str, queue: str, limit: int | None, cfg: OrchestrationConfig,
                   checkout: Path) -> tuple[list[str], dict]:
    """`prefect worker start` for this host: flow runs of `queue` in `checkout` (VAEGAN_REPO,
    read by prefect.yaml's pull steps; its code first on PYTHONPATH), at most `limit` at once
    (None: no limit), with heartbeats that fit `lost_after_s`."""
    prefect = shutil.which("prefect") or "prefect"
    argv = [prefect, "worker", "start", "--pool", pool, "--work-queue", queue, "--type", "process"]
    if limit is not None:
        argv += ["--limit", str(limit)]
    path = os.pathsep.join([str(checkout), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(heartbeat_s(cfg)), "VAEGAN_REPO": str(checkout),
           "PYTHONPATH": path}
    return argv, env


def ensure_lost_run_automation(cfg: OrchestrationConfig) -> None:
    """Create (or update) the automation that marks a stage run Crashed after `lost_after_s`
    without a heartbeat (a run that ends sends a final state event instead)."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    trigger = EventTrigger(
        after={"prefect.flow-run.heartbeat"},
        expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
        match={"prefect.resource.id": ["prefect.flow-run.*"]},
        match_related={"prefect.resource.id": f"prefect.tag.{STAGE_TAG}"},
        for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
        within=timedelta(seconds=cfg.lost_after_s))
    action = ChangeFlowRunState(state=StateType.CRASHED, force=True,
                                message=f"no heartbeat for {cfg.lost_after_s:.0f} s: its host was lost")
    try:
        automation = Automation.read(name=AUTOMATION)
    except ValueError:
        Automation(name=AUTOMATION, description="Stage runs of a spread grid whose host stopped answering "
                   "(pipeline/prefect_runs.py)", trigger=trigger, actions=[action]).create()
        return
    if automation.trigger != trigger or automation.actions != [action]:
        automation.trigger, automation.actions = trigger, [action]
        automation.update()


@contextlib.contextmanager
def stage_lock(name: str, cfg: OrchestrationConfig, log: Callable[[str], None]) -> Iterator[None]:
    """Hold stage `name`'s global concurrency slot (created on first use) while the block runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists

    limit = LOCK_PREFIX + name
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=limit, limit=1))
    t0 = time.monotonic()
    with concurrency(limit, occupy=1, lease_duration=lease_s(cfg), strict=True, raise_on_lease_renewal_failure=True):
        log(f"{name}: holding lock {limit} (waited {time.monotonic() - t0:.1f} s)")
        yield


class PrefectLauncher:
    """Stage runs as flow runs of `deployment` (the stage flow), linked to the calling flow run.

    params_file: handed to each run; sources: per stage, the planning host's hashes of its
    code and params (hosts.check_sources)."""

    def __init__(self, deployment: str, params_file: str, sources: dict[str, dict[str, str]]):
        self.deployment, self.params_file, self.sources = deployment, params_file, sources

    def start(self, call: StageCall, attempt: int) -> str:
        from prefect.deployments import run_deployment

        name = call.label + (f" (attempt {attempt})" if attempt > 1 else "")
        run = run_deployment(self.deployment, parameters={"stage": call.name, "params_file": self.params_file,
                                                          "sources": self.sources.get(call.name)},
                             timeout=0, flow_run_name=name, tags=[STAGE_TAG])
        return str(run.id)

    def states(self, run_ids: list[str]) -> dict[str, RunState]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
        from prefect.types._datetime import now

        runs = []
        with get_client(sync_client=True) as client:
            for i in range(0, len(run_ids), PAGE):
                ids = [UUID(r) for r in run_ids[i:i + PAGE]]
                runs += client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=PAGE)
        found = {}
        for run in runs:
            state = run.state
            since = (now("UTC") - state.timestamp).total_seconds() if state and state.timestamp else 0.0
            found[str(run.id)] = RunState(state.type.value if state else "SCHEDULED", state.name if state else "",
                                          (state.message or "") if state else "", since)
        return found

    def mark_lost(self, run_id: str, reason: str) -> None:
        from prefect.client.orchestration import get_client
        from prefect.states import Crashed

        with get_client(sync_client=True) as client:
            client.set_flow_run_state(UUID(run_id), Crashed(message=reason), force=True)
