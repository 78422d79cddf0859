"""Stage outputs shared between checkouts through a DVC remote folder (pipeline/remote.py)."""

from __future__ import annotations

import json

import pytest

from pipeline.execute import execute_stage
from pipeline.devices import DevicePool
from pipeline.plan import plan_stage
from pipeline.remote import PREFIX, CheckpointPusher, RemoteMissing, SharedRemote, local_files
from tests.toy_dvc import clone, dvc, make_origin


def run_here(root, name):
    """Run stage `name` in checkout `root` (its own process) and publish it."""
    call = plan_stage(root, name, available=False)
    execute_stage(call, str(root), DevicePool([None]), False, lambda line: None)
    return SharedRemote(root).publish(name, {"device": "cpu"})


def test_outputs_travel_between_checkouts(tmp_path):
    origin, remote_dir = make_origin(tmp_path)
    a, b, c = (clone(origin, tmp_path / h) for h in "abc")
    record = run_here(a, "make")
    assert record["lock"]["outs"][0]["path"] == "data/a" and record["ran_on"].endswith(str(a))
    assert (remote_dir / PREFIX / "stages" / "make.yaml").exists()

    shared_b = SharedRemote(b)
    lines = []
    assert shared_b.pull_dependencies("train", lines.append) == ["data/a"]  # exactly what train depends on
    assert (b / "data" / "a" / "data.txt").read_text() == "rows\n" and "data/a" in lines[0]
    assert not plan_stage(b, "train", available=False).up_to_date
    run_here(b, "train")
    assert (remote_dir / PREFIX / "files" / "ckpt" / "b" / "step-00000002.pt.sha256").exists()  # uncached, mirrored
    assert SharedRemote(a).pull_dependencies("report", lambda line: None) == ["models/b"]
    run_here(a, "report")

    # the aggregating checkout pulls everything: dvc status is clean there, as after `dvc repro`
    shared_c = SharedRemote(c)
    assert sorted(shared_c.pull_outputs(["make", "train", "report"])) == ["make", "report", "train"]
    assert dvc(c, "status", "--json").stdout.strip() == "{}", dvc(c, "status").stdout
    assert (c / "report.txt").read_text() == "resumed from: nothing\n"
    assert sorted(local_files(c / "ckpt" / "b")) == ["step-00000002.pt", "step-00000002.pt.sha256"]

    # a record makes a stage current elsewhere while its outputs stay in the remote
    shared_c.merge_records({"train": shared_c.read_record("train")})
    assert plan_stage(c, "train", available=True).up_to_date


def test_changed_code_makes_a_published_stage_stale(tmp_path):
    origin, _ = make_origin(tmp_path)
    a, b = clone(origin, tmp_path / "a"), clone(origin, tmp_path / "b")
    run_here(a, "make")
    shared = SharedRemote(b)
    shared.merge_records({"make": shared.read_record("make")})
    assert plan_stage(b, "make", available=True).up_to_date
    (b / "toystage.py").write_text((b / "toystage.py").read_text() + "# changed\n")
    assert not plan_stage(b, "make", available=True).up_to_date


def test_checkpoint_pusher_pushes_new_files_then_prunes(tmp_path):
    origin, remote_dir = make_origin(tmp_path)
    a = clone(origin, tmp_path / "a")
    folder = a / "ckpt" / "b"
    folder.mkdir(parents=True)
    (folder / "step-00000001.pt").write_bytes(b"one")
    (folder / "step-00000001.pt.sha256").write_text("x  step-00000001.pt\n")
    (folder / ".step-00000002.pt.tmp").write_bytes(b"half")  # an atomic write under way: never pushed
    lines = []
    pusher = CheckpointPusher(SharedRemote(a), ["ckpt/b"], log=lines.append)
    pusher.push_new()
    mirror = remote_dir / PREFIX / "files" / "ckpt" / "b"
    assert sorted(p.name for p in mirror.iterdir()) == ["step-00000001.pt", "step-00000001.pt.sha256"]
    assert lines == ["pushed ckpt/b/step-00000001.pt to the DVC remote"]
    (folder / "step-00000002.pt").write_bytes(b"two")
    (folder / "step-00000002.pt.sha256").write_text("y  step-00000002.pt\n")
    for old in folder.glob("step-00000001*"):
        old.unlink()  # pruned by the training loop
    pusher.push_new()
    assert sorted(p.name for p in mirror.iterdir()) == ["step-00000002.pt", "step-00000002.pt.sha256"]
    pusher.push_new()
    assert len(lines) == 2  # nothing new, nothing pushed again


def test_upload_puts_checksums_after_their_files(tmp_path):
    origin, _ = make_origin(tmp_path)
    a = clone(origin, tmp_path / "a")
    folder = a / "ckpt" / "b"
    folder.mkdir(parents=True)
    for name in ("step-1.pt.sha256", "step-1.pt", "step-2.pt.sha256", "step-2.pt"):
        (folder / name).write_text(name)
    assert SharedRemote(a).upload("ckpt/b") == ["step-1.pt", "step-2.pt", "step-1.pt.sha256", "step-2.pt.sha256"]


def test_download_exact_removes_what_the_remote_lacks(tmp_path):
    origin, _ = make_origin(tmp_path)
    a, b = clone(origin, tmp_path / "a"), clone(origin, tmp_path / "b")
    (a / "ckpt" / "b").mkdir(parents=True)
    (a / "ckpt" / "b" / "kept.pt").write_text("remote")
    SharedRemote(a).upload("ckpt/b")
    (b / "ckpt" / "b").mkdir(parents=True)
    (b / "ckpt" / "b" / "stale.pt").write_text("local")
    assert SharedRemote(b).download("ckpt/b", exact=False) == 1
    assert sorted(local_files(b / "ckpt" / "b")) == ["kept.pt", "stale.pt"]  # resume state: local files stay
    SharedRemote(b).download("ckpt/b", exact=True)
    assert local_files(b / "ckpt" / "b") == ["kept.pt"]


def test_missing_remote_and_missing_upstream_record_are_clear_errors(tmp_path):
    origin, _ = make_origin(tmp_path)
    a = clone(origin, tmp_path / "a")
    assert dvc(a, "remote", "default", "--unset").returncode == 0
    with pytest.raises(RemoteMissing, match=r"no default DVC remote.*dvc remote add -d"):
        SharedRemote(a)
    b = clone(origin, tmp_path / "b")
    with pytest.raises(ValueError, match="train depends on make, which has no record"):
        SharedRemote(b).pull_dependencies("train", lambda line: None)
    record = json.dumps(SharedRemote(b).records())
    assert record == "{}"
