"""Device slots (pipeline/devices.py): one task per GPU, packed cells, and slots shared by processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from pipeline.config import parse_params
from pipeline.devices import DevicePool, HostSlots
from pipeline.schema import ConfigError
from tests.conftest import ROOT, tiny_params


def test_device_pool_one_task_per_gpu(monkeypatch):
    cfg = parse_params(tiny_params()).orchestration
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    pool = DevicePool.detect(cfg)
    assert pool.devices == ["0", "2"]
    held, both_inside = [], threading.Barrier(2)

    def hold():
        with pool.acquire() as device:
            held.append(device)
            both_inside.wait(timeout=30)  # breaks (and fails the test) unless two tasks run at once

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(held) == ["0", "2"] and not both_inside.broken  # two tasks at once, each on its own GPU
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert DevicePool.detect(cfg).devices == [None]  # no GPU: one CPU slot, cells in sequence
    explicit = parse_params(tiny_params(orchestration={"devices": "1,3"})).orchestration
    assert DevicePool.detect(explicit).devices == ["1", "3"]
    packed = parse_params(tiny_params(orchestration={"devices": "1,3", "cells_per_gpu": 3})).orchestration
    assert DevicePool.detect(packed).devices == ["1", "3"] * 3  # the first two tasks on different GPUs
    with pytest.raises(ConfigError, match="orchestration.devices"):
        parse_params(tiny_params(orchestration={"devices": "gpu0"}))
    with pytest.raises(ConfigError, match="orchestration.retry"):
        parse_params(tiny_params(orchestration={"retry": 2}))
    with pytest.raises(ConfigError, match=r"orchestration.lost_after_s.*>= 45"):
        parse_params(tiny_params(orchestration={"lost_after_s": 30}))


def test_packed_cells_share_a_gpu_at_once(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    pool = DevicePool.detect(parse_params(tiny_params(orchestration={"cells_per_gpu": 3})).orchestration)
    held, all_inside = [], threading.Barrier(3)

    def hold():
        with pool.acquire() as device:
            held.append(device)
            all_inside.wait(timeout=30)  # breaks (and fails the test) unless three tasks hold GPU 5 at once

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert held == ["5", "5", "5"] and not all_inside.broken


HOLDER = """
import sys, time
from pipeline.devices import HostSlots
with HostSlots(["0", "1"], sys.argv[1]).acquire() as device:
    print(device, flush=True)
    time.sleep(600)
"""


def test_host_slots_are_shared_by_processes_and_freed_when_one_dies(tmp_path):
    """Two processes hold both GPUs of the host; a third stage waits until one of them is killed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holders = [subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                                env=env) for _ in range(2)]
    try:
        devices = [h.stdout.readline().strip() for h in holders]
        assert sorted(devices) == ["0", "1"]
        slots = HostSlots(["0", "1"], tmp_path, poll_s=0.05)
        got: list[str] = []

        def take():
            with slots.acquire() as device:
                got.append(device)

        waiter = threading.Thread(target=take)
        waiter.start()
        time.sleep(0.5)
        assert not got  # both slots held elsewhere
        os.kill(holders[1].pid, signal.SIGKILL)  # a process dies without releasing anything
        holders[1].wait()
        waiter.join(timeout=30)
        assert got == [devices[1]]  # the dead process's GPU
    finally:
        for h in holders:
            h.kill()
            h.wait()


def test_a_freed_slot_goes_to_the_waiting_task_of_highest_priority():
    pool = DevicePool([None])
    order: list[str] = []
    release = threading.Event()

    def holder():
        with pool.acquire():
            release.wait(timeout=30)

    def waiter(name: str, priority: float):
        with pool.acquire(priority):
            order.append(name)

    first = threading.Thread(target=holder)
    first.start()
    while not pool._waiting and pool._free:  # the holder has the slot
        time.sleep(0.01)
    waiters = []
    for name, priority in [("low", 1), ("high", 5), ("mid", 3), ("high-later", 5)]:
        waiters.append(threading.Thread(target=waiter, args=(name, priority)))
        waiters[-1].start()
        while len(pool._waiting) < len(waiters):
            time.sleep(0.01)
    release.set()
    for t in [first, *waiters]:
        t.join(timeout=30)
    assert order == ["high", "high-later", "mid", "low"]
