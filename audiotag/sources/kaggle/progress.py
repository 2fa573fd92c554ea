"""Download progress: bytes, share, rate and time left, logged while the client writes.

Lines go to the ``audiotag.kaggle`` logger at INFO every 5 % or 5 s.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

logger = logging.getLogger("audiotag.kaggle")


def format_bytes(n: float) -> str:
    """``1_234_567`` -> ``'1.2 MB'`` (decimal units)."""
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.0f} kB"


class DownloadProgress:
    """Logs a download's bytes, share and rate at INFO every ``step`` of it or ``every_s``.

    Args:
        name: What is downloaded (the archive's name).
        total: Its size in bytes, if known.
        done: Bytes already there when the download starts (a resume).
        clock: Seconds, monotonic (a fake one in tests).
        every_s: The longest pause between two lines.
        step: The share of ``total`` between two lines.
    """

    def __init__(
        self,
        name: str,
        total: int | None,
        done: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
        every_s: float = 5.0,
        step: float = 0.05,
    ) -> None:
        self.name, self.total, self.clock = name, total, clock
        self.every_s, self.step = every_s, step
        self.start_t = self.last_t = clock()
        self.start_done = self.last_done = done
        self.last_step = self._step(done)

    def _step(self, done: int) -> int:
        return int(done / self.total / self.step) if self.total else 0

    def update(self, done: int) -> str | None:
        """Records ``done`` bytes; logs and returns a line when one is due."""
        now = self.clock()
        if done < self.last_done:  # the client started the file over
            self.start_done = self.last_done = done
            self.start_t = self.last_t = now
            self.last_step = self._step(done)
            return None
        step = self._step(done)
        if now - self.last_t < self.every_s and step <= self.last_step:
            return None
        rate = (done - self.last_done) / max(now - self.last_t, 1e-9)
        line = f"{self.name}: {format_bytes(done)}"
        if self.total:
            line += f" of {format_bytes(self.total)} ({100 * done / self.total:.0f}%)"
        line += f", {rate / 1e6:.1f} MB/s"
        if self.total and rate > 0 and done < self.total:
            line += f", about {_format_duration((self.total - done) / rate)} left"
        logger.info("%s", line)
        self.last_t, self.last_done, self.last_step = now, done, step
        return line

    def finish(self, done: int) -> str:
        """Logs and returns the summary line."""
        seconds = max(self.clock() - self.start_t, 1e-9)
        fetched = max(done - self.start_done, 0)
        line = (
            f"{self.name}: downloaded {format_bytes(fetched)} in {seconds:.1f} s "
            f"({fetched / seconds / 1e6:.1f} MB/s); {format_bytes(done)} on disk"
        )
        logger.info("%s", line)
        return line


def _format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@contextlib.contextmanager
def _watch(path: Path, progress: DownloadProgress, interval: float = 0.5) -> Iterator[None]:
    """Polls ``path``'s size into ``progress`` from a thread while the body runs.

    The thread runs in a copy of the caller's context, so loggers that attach
    records to the current (Prefect) run still find it.
    """
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(interval):
            progress.update(_file_size(path))

    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(poll,), name="kaggle-progress", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
