"""Placing folds on devices: one fold per visible GPU at a time; on CPU, a few folds at
once, each on its own share of the cores."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import torch

THREADS_ENV = "AUDIOTAG_CPU_THREADS"

# Folds that train at once on CPU, at most: a stage has 5 folds in both presets, and
# more Python threads than that would wait on each other for the interpreter.
MAX_CPU_FOLDS = 5


def flush_denormals() -> None:
    """Makes the calling thread's CPU float math flush denormal numbers to zero (FTZ and
    DAZ), and so every thread it starts afterwards, PyTorch's OpenMP workers included.

    Trained weights and their gradients drift below float32's normal range
    (1.2e-38); x86 cores compute on such numbers up to 100x slower. Without this the
    reference model's backward pass on CPU took 10x longer from its third step
    (bench/train_throughput.py). The flag is per thread and a thread's workers copy
    it when they are created, so it is set where work starts (a flow, a stage's
    training, a prediction) rather than once. GPUs flush denormals in their own
    kernels already; numbers that small are zero for every purpose here.
    """
    torch.set_flush_denormal(True)


# Training and prediction precisions: float32, or autocast to bfloat16 or float16 (the
# latter with a loss scaler). `device_precision` picks one for a device.
PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def device_precision(device: torch.device | str, precision: str | None = None) -> str:
    """The precision to train and predict in on ``device``.

    Args:
        device: ``cpu`` or ``cuda:N``.
        precision: one of `PRECISIONS`, or None for the device's own: bf16 on a GPU
            that has it (no loss scaling needed), else fp16; fp32 on CPU, where autocast
            is slower than float32 on most cores. Tests ask for bf16 and fp16 on CPU: the
            same autocast and scaler code then runs as on a GPU.

    Raises:
        ValueError: ``precision`` is not one of `PRECISIONS`.
    """
    if precision is not None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
        return precision
    if torch.device(device).type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The dtype autocast computes in for ``precision``; None for fp32 (no autocast)."""
    return _DTYPES.get(device_precision("cpu", precision))


def autocast_on(device: torch.device | str, precision: str | None = None) -> AbstractContextManager:
    """``torch.autocast`` on ``device``'s type in its precision (disabled for fp32)."""
    device = torch.device(device)
    dtype = autocast_dtype(device_precision(device, precision))
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask, else every core)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_threads(cores: int | None = None) -> int:
    """Threads each fold trains with on CPU: AUDIOTAG_CPU_THREADS, else the cores
    shared out between up to MAX_CPU_FOLDS folds (1 on machines of up to 9 cores).

    A small network's training step is a long chain of small operations that one
    core runs nearly as fast as two, so two folds on one core each train 1.3-1.5x
    faster in all than one fold on both (bench/train_throughput.py). The count
    depends on the machine, never on which folds happen to run together, so a fold
    trains the same on every run here.
    """
    if os.environ.get(THREADS_ENV):
        return max(1, int(os.environ[THREADS_ENV]))
    cores = cores or cpu_cores()
    return max(1, cores // MAX_CPU_FOLDS)


def cpu_slots(cores: int | None = None) -> int:
    """Folds that train at once on CPU: the cores over the threads each takes."""
    cores = cores or cpu_cores()
    return max(1, min(MAX_CPU_FOLDS, cores // cpu_threads(cores)))


class DevicePool:
    """Hands out devices to concurrent fold trainings in this process.

    With N visible GPUs, N folds train at once, each on its own GPU. On a CPU
    machine, ``cpu_slots()`` folds train at once with ``cpu_threads()`` threads
    each (PyTorch's thread count is per calling thread).
    """

    def __init__(self, devices: list[str] | None = None) -> None:
        if devices is None:
            n = torch.cuda.device_count() if torch.cuda.is_available() else 0
            devices = [f"cuda:{i}" for i in range(n)] or ["cpu"] * cpu_slots()
        self._free: queue.Queue[str] = queue.Queue()
        for d in devices:
            self._free.put(d)

    @contextmanager
    def lease(self, threads: int | None = None) -> Iterator[str]:
        """A free device for the calling thread, until the block ends.

        Args:
            threads: on CPU, the threads to compute with (default ``cpu_threads()``);
                work that runs alone, such as the test predictions after every fold,
                takes every core.
        """
        device = self._free.get()
        try:
            if device.startswith("cuda"):
                torch.cuda.set_device(device)
            else:
                # A thread's first torch call sets its thread count to the last one set
                # in any thread; make that call first, so that this thread keeps its own.
                torch.get_num_threads()
                torch.set_num_threads(threads or cpu_threads())
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
