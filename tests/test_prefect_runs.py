"""What a spread grid asks of Prefect (pipeline/prefect_runs.py), short of a server: worker
command, heartbeat and lease periods, the lost-run automation's trigger."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from pipeline import prefect_runs
from pipeline.config import parse_params
from pipeline.schema import ConfigError
from tests.conftest import ROOT, tiny_params


def orch(**kw):
    return parse_params(tiny_params(orchestration=kw)).orchestration


def test_heartbeat_and_lease_fit_the_lost_after_window():
    assert prefect_runs.heartbeat_s(orch(lost_after_s=90)) == 30 and prefect_runs.lease_s(orch(lost_after_s=90)) == 90
    assert prefect_runs.heartbeat_s(orch(lost_after_s=45)) == 30 and prefect_runs.lease_s(orch(lost_after_s=45)) == 60
    assert prefect_runs.heartbeat_s(orch(lost_after_s=300)) == 100


def test_a_worker_with_rare_heartbeats_is_refused():
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 180}):  # Prefect's default
        with pytest.raises(ConfigError, match=r"PREFECT_FLOWS_HEARTBEAT_FREQUENCY.*180.*python -m pipeline worker"):
            prefect_runs.check_heartbeat(orch(lost_after_s=90))
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 30}):
        prefect_runs.check_heartbeat(orch(lost_after_s=45))


def test_worker_command_runs_in_its_checkout(tmp_path):
    argv, env = prefect_runs.worker_command("gpu-hosts", "cells", 3, orch(lost_after_s=90), tmp_path)
    assert argv[1:] == ["worker", "start", "--pool", "gpu-hosts", "--work-queue", "cells", "--type", "process",
                        "--limit", "3"]
    assert env["VAEGAN_REPO"] == str(tmp_path) and env["PYTHONPATH"].split(":")[0] == str(tmp_path)
    assert env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"
    argv, _ = prefect_runs.worker_command("gpu-hosts", "grid", None, orch(), Path("/x"))
    assert "--limit" not in argv


def test_prefect_yaml_reads_the_checkout_on_the_worker():
    """`{{ $VAEGAN_REPO }}` would be filled in once, by `prefect deploy` on the deploying host."""
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    script = config["pull"][0]["prefect.deployments.steps.run_shell_script"]["script"]
    assert "${VAEGAN_REPO" in script and "{{ $" not in (ROOT / "prefect.yaml").read_text()
    queues = {d["name"]: d["work_pool"]["work_queue_name"] for d in config["deployments"]}
    assert queues == {"nightly-grid": "grid", "one-cell": "grid", "one-stage": "cells"}
