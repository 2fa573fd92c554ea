"""A FIFO that tells whether anyone opened it: the proof that a check never opens a file."""

from __future__ import annotations

import os
import threading
from pathlib import Path


class WatchedFifo:
    """A FIFO at ``path`` with a writer waiting for a reader (``open`` blocks until then).

    Any process that opens the FIFO to read it, even without blocking, lets the writer
    go: `opened` then turns true. `close` lets a waiting writer go and ends the thread.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        os.mkfifo(self.path)
        self._opened = threading.Event()
        self._closing = False
        self._writer = threading.Thread(target=self._wait_for_a_reader, daemon=True)
        self._writer.start()

    def _wait_for_a_reader(self) -> None:
        fd = os.open(self.path, os.O_WRONLY)  # blocks until someone opens it to read
        if not self._closing:
            self._opened.set()
        os.close(fd)

    def opened(self, wait: float = 0.5) -> bool:
        """Whether a reader has opened the FIFO (waiting up to ``wait`` s for the writer)."""
        return self._opened.wait(wait)

    def close(self) -> None:
        if self._writer.is_alive():
            self._closing = True
            os.close(os.open(self.path, os.O_RDONLY | os.O_NONBLOCK))  # lets the writer go
        self._writer.join(5)

    def __enter__(self) -> WatchedFifo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
