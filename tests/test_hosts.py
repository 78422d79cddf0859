"""A grid spread over hosts (pipeline/hosts.py): the planning host's loop over stage runs, with a
launcher that plays the work pool, and a stage run on a host of the toy DVC project."""

from __future__ import annotations

import contextlib
import threading

import pytest

from pipeline.config import parse_params
from pipeline.hosts import SKIPPED, RunState, check_sources, run_remotely, run_stage_here
from pipeline.plan import StageCall, source_hashes
from pipeline.remote import SharedRemote
from pipeline.schema import ConfigError
from tests.conftest import tiny_params
from tests.toy_dvc import clone, dvc, make_origin


def call(name: str, *upstream: str, up_to_date: bool = False) -> StageCall:
    return StageCall(name=name, stage=name, argv=("python", "-m", f"stages.{name}"), upstream=upstream,
                     dataset=None, model=None, seed=None, up_to_date=up_to_date)


class Pool:
    """Plays a work pool: each run ends as `script` says for its stage's attempt (default
    Completed), one poll after it started; a run marked lost becomes Crashed."""

    def __init__(self, script: dict[tuple[str, int], RunState]):
        self.script, self.runs, self.started, self.lost = script, {}, [], []

    def start(self, call: StageCall, attempt: int) -> str:
        run_id = f"{call.name}#{attempt}"
        self.started.append(run_id)
        self.runs[run_id] = self.script.get((call.name, attempt), RunState("COMPLETED", "Completed"))
        return run_id

    def states(self, run_ids):
        return {i: self.runs[i] for i in run_ids}

    def mark_lost(self, run_id, reason):
        self.lost.append(run_id)
        self.runs[run_id] = RunState("CRASHED", "Crashed", reason)


def run(calls, pool, retries=1, lost_after_s=45.0):
    lines = []
    return run_remotely(calls, pool, retries, lost_after_s, lines.append, poll_s=0), lines


def test_stages_start_after_their_upstream_and_a_lost_host_is_replaced():
    calls = [call("prepare"), call("train", "prepare"), call("evaluate", "train"), call("toy", "prepare")]
    pool = Pool({("train", 1): RunState("CRASHED", "Crashed", "no heartbeat for 45 s: its host was lost")})
    results, lines = run(calls, pool)
    assert pool.started.index("prepare#1") < pool.started.index("train#1") < pool.started.index("train#2") \
        < pool.started.index("evaluate#1")
    assert {n: r["status"] for n, r in results.items()} == dict.fromkeys(["prepare", "train", "evaluate", "toy"],
                                                                          "done")
    assert results["train"]["run_id"] == "train#2"
    assert any("train: run train#1 crashed (no heartbeat for 45 s" in line and "again" in line for line in lines)


def test_a_stage_failing_past_its_retries_stops_only_what_depends_on_it():
    calls = [call("prepare"), call("train", "prepare"), call("evaluate", "train"), call("other", "prepare")]
    boom = RunState("FAILED", "Failed", "StageFailed: train exited with status 1")
    results, _ = run(calls, Pool({("train", 1): boom, ("train", 2): boom}))
    assert results["train"]["status"] == "failed" and "exited with status 1" in results["train"]["error"]
    assert results["evaluate"]["status"] == "not run" and "upstream train" in results["evaluate"]["error"]
    assert results["other"]["status"] == "done"


def test_current_stages_are_not_started_and_skipped_runs_say_so():
    calls = [call("prepare", up_to_date=True), call("train", "prepare")]
    pool = Pool({("train", 1): RunState("COMPLETED", SKIPPED)})
    results, _ = run(calls, pool)
    assert pool.started == ["train#1"]
    assert results["prepare"]["status"] == "skipped" and results["train"]["status"] == "skipped"


def test_a_run_pending_too_long_lost_its_host():
    pool = Pool({("train", 1): RunState("PENDING", "Pending", "", since_s=50.0)})
    results, _ = run([call("train")], pool, retries=1, lost_after_s=45.0)
    assert pool.lost == ["train#1"] and results["train"]["status"] == "done" and pool.started[-1] == "train#2"


def test_a_cancelled_run_is_not_retried():
    pool = Pool({("train", 1): RunState("CANCELLED", "Cancelled", "by a user")})
    results, _ = run([call("train")], pool, retries=3)
    assert pool.started == ["train#1"] and results["train"]["error"] == "cancelled: by a user"


# ------------------------------------------------------------------ a stage run on a host


@pytest.fixture
def orch():
    return parse_params(tiny_params(orchestration={"inline_on_cpu": False})).orchestration


def test_stage_runs_pull_what_they_need_and_resume_from_the_pushed_state(tmp_path, orch):
    origin, remote_dir = make_origin(tmp_path)
    a, b = clone(origin, tmp_path / "a"), clone(origin, tmp_path / "b")
    held, lines = [], []

    @contextlib.contextmanager
    def lock(name):
        held.append(name)
        yield

    assert run_stage_here(a, "make", orch, None, lock, lines.append)["status"] == "done"
    # an earlier attempt on a lost host pushed a checkpoint of train: the next host resumes from it
    (a / "ckpt" / "b").mkdir(parents=True)
    (a / "ckpt" / "b" / "step-00000001.pt").write_bytes(b"early")
    SharedRemote(a).upload("ckpt/b")
    result = run_stage_here(b, "train", orch, None, lock, lines.append)
    assert result["status"] == "done" and result["resumed_from"] == 1 and result["host"].endswith(str(b))
    assert (b / "models" / "b" / "model.txt").read_text() == "resumed from: step-00000001.pt\n"
    assert any("train: resuming from step 1 pushed to the DVC remote" in line for line in lines)
    record = SharedRemote(a).read_record("train")
    assert record["resumed_from"] == 1 and record["ran_on"].endswith(str(b))
    # the same stage again, anywhere: current in the remote, skipped
    again = run_stage_here(a, "train", orch, None, lock, lines.append)
    assert again["status"] == "skipped" and again["host"].endswith(str(b))
    assert held == ["make", "train", "train"]
    assert run_stage_here(a, "report", orch, None, lock, lines.append)["status"] == "done"
    assert (a / "report.txt").read_text() == "resumed from: step-00000001.pt\n"
    assert "ckpt/b" in dvc(a, "status").stdout  # a still holds the lost attempt's checkpoint folder
    SharedRemote(a).pull_outputs(["make", "train", "report"])  # as the aggregating host does
    assert dvc(a, "status", "--json").stdout.strip() == "{}"


def test_two_runs_of_one_stage_never_overlap(tmp_path, orch):
    """With a lock, the second run of a stage waits, then finds it current and skips it."""
    origin, _ = make_origin(tmp_path)
    a, b = clone(origin, tmp_path / "a"), clone(origin, tmp_path / "b")
    the_lock = threading.Lock()

    @contextlib.contextmanager
    def lock(name):
        with the_lock:
            yield

    results = {}
    threads = [threading.Thread(target=lambda h=h: results.setdefault(h, run_stage_here(
        h, "make", orch, None, lock, lambda line: None))) for h in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["status"] for r in results.values()) == ["done", "skipped"]


def test_a_host_on_another_commit_is_refused(tmp_path):
    origin, _ = make_origin(tmp_path)
    a, b = clone(origin, tmp_path / "a"), clone(origin, tmp_path / "b")
    expected = source_hashes(a, ["make"])["make"]
    check_sources(b, "make", expected)  # same commit: fine
    (b / "toystage.py").write_text("# another revision\n")
    with pytest.raises(ConfigError, match=r"differs from the planning host in \['toystage.py'\].*same commit"):
        check_sources(b, "make", expected)
