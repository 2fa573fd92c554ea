"""Placing folds on devices: one fold per visible GPU at a time, one at a time on CPU."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

THREADS_ENV = "AUDIOTAG_CPU_THREADS"


def cpu_threads() -> int:
    """Threads a fold trains with on CPU: every core, or AUDIOTAG_CPU_THREADS.

    Set it where several processes train at once on one machine (Dask workers:
    cores / workers), so that they share the cores instead of fighting over them.
    """
    return max(1, int(os.environ.get(THREADS_ENV) or 0) or os.cpu_count() or 1)


class DevicePool:
    """Hands out devices to concurrent fold trainings in this process.

    With N visible GPUs, N folds train at once, each on its own GPU; on a CPU
    machine folds take turns, each using every core (two folds sharing two
    cores only slow each other down).
    """

    def __init__(self, devices: list[str] | None = None) -> None:
        if devices is None:
            n = torch.cuda.device_count() if torch.cuda.is_available() else 0
            devices = [f"cuda:{i}" for i in range(n)] or ["cpu"]
        self._free: queue.Queue[str] = queue.Queue()
        for d in devices:
            self._free.put(d)

    @contextmanager
    def lease(self) -> Iterator[str]:
        device = self._free.get()
        try:
            if device.startswith("cuda"):
                torch.cuda.set_device(device)
            else:
                torch.set_num_threads(cpu_threads())
            yield device
        finally:
            self._free.put(device)


_POOL: DevicePool | None = None
_LOCK = threading.Lock()


def device_pool() -> DevicePool:
    """The process-wide pool."""
    global _POOL
    with _LOCK:
        if _POOL is None:
            _POOL = DevicePool()
        return _POOL
