"""Placing folds: on CPU a few folds at once, each on its own share of the cores."""

from __future__ import annotations

import threading

import pytest
import torch

from audiotag.devices import THREADS_ENV, DevicePool, cpu_slots, cpu_threads


@pytest.mark.parametrize(
    ("cores", "threads", "slots"),
    [(1, 1, 1), (2, 1, 2), (4, 1, 4), (8, 1, 5), (16, 3, 5), (64, 12, 5)],
)
def test_cores_are_shared_between_at_most_five_folds(
    cores: int, threads: int, slots: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert (cpu_threads(cores), cpu_slots(cores)) == (threads, slots)


def test_the_environment_sets_the_threads_per_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(THREADS_ENV, "2")
    assert (cpu_threads(2), cpu_slots(2)) == (2, 1)
    assert (cpu_threads(16), cpu_slots(16)) == (2, 5)


def test_two_cpu_folds_train_at_once_each_with_its_own_thread_count() -> None:
    pool = DevicePool(["cpu", "cpu"])
    inside = threading.Barrier(2, timeout=30)  # both leases held at the same time
    seen: dict[str, int] = {}

    def fold(name: str, threads: int) -> None:
        with pool.lease(threads=threads) as device:
            assert device == "cpu"
            inside.wait()
            torch.ones(64, 64) @ torch.ones(64, 64)
            seen[name] = torch.get_num_threads()
            inside.wait()

    runs = [threading.Thread(target=fold, args=(f"f{i}", i + 1)) for i in range(2)]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    assert seen == {"f0": 1, "f1": 2}
