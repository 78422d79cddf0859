"""Where a stage runs on a host: one slot per GPU (or CPU slots), shared by threads or processes.

`DevicePool` hands slots to the threads of one process (the single-host grid flow);
`HostSlots` hands the same slots to separate processes of one host (the stage flow runs a
worker starts, one process each), through file locks the kernel releases when a process dies.
Both yield the slot's GPU id (the stage's CUDA_VISIBLE_DEVICES), or None on a CPU slot.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import itertools
import os
import threading
import time
from pathlib import Path
from typing import Iterator

from pipeline.schema import require
from pipeline.sections import OrchestrationConfig


def slot_devices(cfg: OrchestrationConfig) -> list[str | None]:
    """A host's slots: `cells_per_gpu` per GPU (interleaved, so the first tasks spread over every
    GPU), or `cpu_slots` CPU slots (None) without a GPU. `devices: auto` = every GPU this host
    shows (CUDA_VISIBLE_DEVICES respected)."""
    if cfg.devices != "auto":
        ids = [d.strip() for d in cfg.devices.split(",") if d.strip()]
    elif (visible := os.environ.get("CUDA_VISIBLE_DEVICES")) is not None:
        ids = [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    else:
        import torch

        ids = [str(i) for i in range(torch.cuda.device_count())]
    return [d for _ in range(cfg.cells_per_gpu) for d in ids] or [None] * cfg.cpu_slots


class DevicePool:
    """Slots for the concurrent tasks of one process: one per GPU id (the task's
    CUDA_VISIBLE_DEVICES), or `cpu_slots` slots without a GPU (None: no GPU setting of ours).
    A slot that frees goes to the waiting task of highest priority (then the longest waiting)."""

    def __init__(self, devices: list[str | None]):
        require(len(devices) >= 1, "orchestration.devices", "leaves no device to run on")
        self.devices = list(devices)
        self._free = list(self.devices)
        self._waiting: list[tuple[float, int]] = []  # heap of (-priority, arrival)
        self._arrivals = itertools.count()
        self._changed = threading.Condition()

    @classmethod
    def detect(cls, cfg: OrchestrationConfig) -> "DevicePool":
        return cls(slot_devices(cfg))

    @contextlib.contextmanager
    def acquire(self, priority: float = 0.0) -> Iterator[str | None]:
        """Block until a slot is free and no waiting task has a higher priority (or the same
        and came earlier); yield its GPU id (None on a CPU slot)."""
        ticket = (-priority, next(self._arrivals))
        with self._changed:
            heapq.heappush(self._waiting, ticket)
            self._changed.wait_for(lambda: self._free and self._waiting[0] == ticket)
            heapq.heappop(self._waiting)
            device = self._free.pop(0)
            self._changed.notify_all()
        try:
            yield device
        finally:
            with self._changed:
                self._free.append(device)
                self._changed.notify_all()


class HostSlots:
    """The same slots for the processes of one host: slot i is held through an exclusive lock
    on `folder`/slot-<i>.lock, released when the holder exits or dies."""

    def __init__(self, devices: list[str | None], folder: str | Path, poll_s: float = 1.0):
        require(len(devices) >= 1, "orchestration.devices", "leaves no device to run on")
        self.devices, self.folder, self.poll_s = list(devices), Path(folder), poll_s

    @classmethod
    def detect(cls, cfg: OrchestrationConfig, folder: str | Path) -> "HostSlots":
        return cls(slot_devices(cfg), folder)

    @contextlib.contextmanager
    def acquire(self, priority: float = 0.0) -> Iterator[str | None]:
        """Block until a slot is free on this host; yield its GPU id (None on a CPU slot).
        `priority` is not used here: the processes of a host take free slots as they come."""
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            for i, device in enumerate(self.devices):
                fd = os.open(self.folder / f"slot-{i}.lock", os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                try:
                    yield device
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)
                return
            time.sleep(self.poll_s)


@contextlib.contextmanager
def host_lock(path: str | Path) -> Iterator[None]:
    """An exclusive lock on `path` among the processes of this host (DVC commands on one checkout)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
