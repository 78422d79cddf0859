"""Running one stage's command (pipeline/execute.py): its GPU, its output lines, its failures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from pipeline.devices import DevicePool
from pipeline.execute import StageFailed, execute_stage
from pipeline.plan import StageCall
from tests.conftest import tiny_params


def call_of(argv: list[str], name: str = "train@d-m-0") -> StageCall:
    return StageCall(name=name, stage="train", argv=tuple(argv), upstream=(), dataset="d", model="m", seed=0,
                     up_to_date=False)


def test_stage_process_gets_its_gpu_and_failures_carry_the_error(tmp_path):
    lines: list[str] = []
    show = "import os; print('visible', os.environ['CUDA_VISIBLE_DEVICES'])"
    result = execute_stage(call_of(["python", "-c", show]), str(tmp_path), DevicePool(["3"]), True, lines.append)
    assert result["status"] == "done" and result["device"] == "3"
    assert "train m/d/seed0 | visible 3" in lines
    crash = "import sys; print('loss became nan'); sys.exit(4)"
    with pytest.raises(StageFailed, match="status 4.*loss became nan"):
        execute_stage(call_of(["python", "-c", crash]), str(tmp_path), DevicePool(["0"]), True, lines.append)
    skipped = StageCall(**{**call_of(["false"]).__dict__, "up_to_date": True})
    assert execute_stage(skipped, str(tmp_path), DevicePool([None]), True, lines.append)["status"] == "skipped"


def test_stage_in_process_on_cpu(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    lines: list[str] = []
    argv = ["python", "-m", "stages.prepare", "toy2d", "--out", "prepared/toy2d"]
    pool = DevicePool([None])
    result = execute_stage(call_of(argv, "prepare@toy2d"), str(tmp_path), pool, True, lines.append)
    assert result["status"] == "done" and (tmp_path / "prepared" / "toy2d" / "meta.json").exists()
    assert any("running on CPU (in process)" in line for line in lines)
    bad = ["python", "-m", "stages.prepare", "no_such_data", "--out", "prepared/x"]
    with pytest.raises(StageFailed, match="status 2.*no_such_data"):
        execute_stage(call_of(bad, "prepare@x"), str(tmp_path), pool, True, lines.append)
    assert Path.cwd() != tmp_path and sys.argv[0] != "stages.prepare"  # the process is as it was


def test_several_cpu_slots_run_stages_in_long_lived_workers_with_a_share_of_the_cores(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.execute import slot_threads

    (tmp_path / "show.py").write_text("import os, sys, torch\n"
                                      "print('pid', os.getpid(), 'threads', torch.get_num_threads())\n"
                                      "if sys.argv[1:] == ['fail']: sys.exit(3)\n"
                                      "if sys.argv[1:] == ['die']: os._exit(9)\n")
    pool = DevicePool([None, None])
    lines: list[str] = []

    def run(i: int, *args: str) -> dict:
        return execute_stage(call_of(["python", "-m", "show", *args], f"train@d-m-{i}"), str(tmp_path), pool, True,
                             lines.append)

    with ThreadPoolExecutor(2) as threads:
        assert [r["status"] for r in threads.map(run, range(4))] == ["done"] * 4
    shown = [line.split("| ")[1].split() for line in lines if "| pid" in line]
    pids = {int(s[1]) for s in shown}
    assert len(pids) <= 2 and {int(s[3]) for s in shown} == {slot_threads(2)}  # two workers at most, reused
    assert any("stage worker" in line for line in lines)
    with pytest.raises(StageFailed, match="status 3"):
        run(5, "fail")
    with pytest.raises(StageFailed, match="status 9.*died"):
        run(6, "die")
    lines.clear()
    assert run(7)["status"] == "done"  # a dead worker is replaced
    assert int(next(line for line in lines if "| pid" in line).split("| ")[1].split()[1]) > 0
