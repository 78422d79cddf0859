"""Running one DVC stage's command on a device slot, its output handed to a logger line by line.

The command is the one in dvc.yaml (`python -m stages.X ...`), so a stage run here writes
what `dvc repro` writes. On a GPU slot it runs in its own process with CUDA_VISIBLE_DEVICES
set to the slot's GPU. Without GPUs (and with `inline_on_cpu`) no stage starts an interpreter
of its own: the single CPU slot runs it in the calling process; each of several CPU slots has
a long-lived worker process (`python -m pipeline.execute`) that runs its stages one after
another with the slot's share of the cores (OMP_NUM_THREADS = cores // slots).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import runpy
import shlex
import subprocess
import sys
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Callable

from pipeline.plan import StageCall
from pipeline.schema import require


class StageFailed(RuntimeError):
    """A stage's command exited with an error; the message carries its last output lines."""


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


def stage_command(call: StageCall) -> list[str]:
    """The stage's command with `python` bound to this interpreter (the worker's environment)."""
    argv = list(call.argv)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


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


def run_in_subprocess(argv: list[str], root: str, device: str | None, out: LineLog, threads: int | None = None) -> int:
    """Run the command in its own process, seeing only GPU `device` when one is given (with
    `threads` CPU threads when given); its exit status."""
    env = thread_env(threads)
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    with subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace") as proc:
        for line in proc.stdout:
            out.write(line)
        code = proc.wait()
    out.flush()
    return code


EXIT_MARK = "\x00stage exit status "  # a stage worker's last line for each stage


def thread_env(threads: int | None) -> dict[str, str]:
    """This process's environment with torch's CPU thread pools (OpenMP, MKL) set to `threads`
    (None: unchanged)."""
    env = dict(os.environ)
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def slot_threads(slots: int) -> int:
    """CPU threads for each of `slots` concurrent CPU stages: an equal share of the cores this
    process may run on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // slots)


class StageWorker:
    """A Python process that runs stage commands in itself (run_in_process), one at a time, with
    `threads` CPU threads: a CPU slot's stages without an interpreter start-up each."""

    def __init__(self, threads: int):
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.execute"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                                     env=thread_env(threads))

    def run(self, argv: list[str], root: str, out: LineLog) -> int:
        """Run one stage command in the worker; its exit status (the worker's own, if it died)."""
        self.proc.stdin.write(json.dumps({"argv": argv, "root": root}) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith(EXIT_MARK):
                out.flush()
                return int(line[len(EXIT_MARK):])
            out.write(line)
        out.flush()
        code = self.proc.wait()
        out.write(f"stage worker {self.proc.pid} died (exit status {code})\n")
        return code or 1

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


class StageWorkers:
    """The long-lived workers of a host's CPU slots, made when first needed (one per slot busy
    at once, so never more than the slots); a worker that died is replaced."""

    def __init__(self):
        self.idle: queue.Queue[StageWorker] = queue.Queue()

    @contextlib.contextmanager
    def take(self, threads: int):
        try:
            worker = self.idle.get_nowait()
        except queue.Empty:
            worker = StageWorker(threads)
        try:
            yield worker
        finally:
            if worker.alive:
                self.idle.put(worker)


WORKERS: dict[int, StageWorkers] = {}  # per thread count: this process's stage workers


def serve() -> None:
    """A stage worker's loop: read {"argv", "root"} lines on stdin, run each stage in this
    process, its output to stdout, then EXIT_MARK and its exit status."""
    real = sys.stdout
    for request in map(json.loads, sys.stdin):
        out = LineLog(lambda line: print(line, file=real, flush=True), deque(maxlen=1))
        code = run_in_process(request["argv"], request["root"], out)
        print(f"{EXIT_MARK}{code}", file=real, flush=True)


def execute_stage(call: StageCall, root: str, devices, inline_on_cpu: bool, log: Callable[[str], None]) -> dict:
    """Run one stage's command on a free slot of `devices` (a DevicePool or HostSlots): in its
    own process with CUDA_VISIBLE_DEVICES set to the slot's GPU, or, on the single CPU slot of a
    host without GPUs and with `inline_on_cpu`, in this process; on one of several CPU slots, in
    a stage worker (or, without `inline_on_cpu`, its own process) with the slot's share of the
    cores. Returns the stage's summary row (status, seconds, device); raises StageFailed on a
    non-zero exit status."""
    if call.up_to_date:
        log(f"{call.label}: up to date ({call.name}), skipped")
        return {"stage": call.name, "label": call.label, "status": "skipped", "time_s": 0.0, "device": ""}
    with devices.acquire(call.priority) as device:
        slots = len(devices.devices)
        inline = device is None and inline_on_cpu and slots == 1
        pooled = device is None and inline_on_cpu and slots > 1
        threads = slot_threads(slots) if device is None and slots > 1 else None
        where = f"GPU {device}" if device is not None else "CPU" + (
            " (in process)" if inline else f" ({threads} thread(s){', stage worker' if pooled else ''})"
            if threads else "")
        log(f"{call.label}: running on {where}: {shlex.join(call.argv)}")
        tail: deque[str] = deque(maxlen=15)
        out = LineLog(lambda line: log(f"{call.label} | {line}"), tail)
        t0 = time.perf_counter()
        if inline:
            code = run_in_process(list(call.argv), root, out)
        elif pooled:
            with WORKERS.setdefault(threads, StageWorkers()).take(threads) as worker:
                code = worker.run(list(call.argv), root, out)
        else:
            code = run_in_subprocess(stage_command(call), root, device, out, threads)
        seconds = time.perf_counter() - t0
    if code != 0:
        raise StageFailed(f"{call.name} exited with status {code}: " + " / ".join(list(tail)[-3:]))
    log(f"{call.label}: done in {seconds:.1f} s")
    return {"stage": call.name, "label": call.label, "status": "done", "time_s": round(seconds, 2),
            "device": device or "cpu"}


def dvc_commit(root: str | Path, names: list[str]) -> list[str]:
    """Record the stages' current deps and outputs in dvc.lock, once for the whole grid, as
    `dvc commit -f` does (save, commit to the cache) but with dvc.yaml resolved and dvc.lock
    written once, not once per stage (2 s a stage on a 170-stage grid); returns one error line
    per stage DVC refused."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    errors = []
    with Repo(str(root)) as repo, repo.lock:
        stages = {stage.addressing: stage for stage in repo.index.stages}
        done = []
        for name in names:
            stage = stages.get(name)
            if stage is None:
                errors.append(f"dvc commit {name}: no such stage in {Path(root) / 'dvc.yaml'}")
                continue
            try:
                stage.save()
                stage.commit()
                done.append(stage)
            except DvcException as e:
                errors.append(f"dvc commit {name}: {e}")
        for dvcfile in {stage.dvcfile.path: stage.dvcfile for stage in done}.values():
            dvcfile.dump_stages([s for s in done if s.dvcfile.path == dvcfile.path], update_pipeline=False)
    return errors


if __name__ == "__main__":
    serve()
