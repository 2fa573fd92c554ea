"""Stopping a run when asked (Ctrl-C): a flag the CLI sets and the long loops check.

Folds train in threads, and a signal reaches only the main thread: the CLI's SIGINT
handler sets the flag, and each fold's training loop checks it before every batch
(`audiotag.training.loop.EpochLoop`), the metadata and feature passes before every
file. What was finished is kept: the fold's checkpoint of its last finished epoch,
the cache records of finished folds.
"""

from __future__ import annotations

import threading

_REQUESTED = threading.Event()


class StopRequested(Exception):
    """The run was asked to stop (Ctrl-C); it stopped at a point it resumes from."""


def request_stop() -> None:
    """Asks every running loop of this process to stop at its next check."""
    _REQUESTED.set()


def stop_requested() -> bool:
    return _REQUESTED.is_set()


def clear_stop() -> None:
    """Forgets a request (a test, or a new run in the same process)."""
    _REQUESTED.clear()


def check_stop(what: str) -> None:
    """Raises `StopRequested` naming ``what`` was stopped, when a stop was asked for."""
    if _REQUESTED.is_set():
        raise StopRequested(f"{what}: stopped on request")
