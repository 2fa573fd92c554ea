"""Atomic writes: a temporary file beside the target, then a rename.

A crash mid-write leaves the previous file (or none), never a half-written one
that a later run would trust.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from audiotag.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yields a temporary path in the target's directory; renames it on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_atomic(target: Path, write: Callable[[Path], Any]) -> Path:
    """Writes ``target`` through ``write(tmp)``; a failed write leaves no temporary file."""
    with atomic_path(target) as tmp:
        write(tmp)
    return target


def write_parquet_atomic(table: pa.Table, target: Path) -> Path:
    return write_atomic(target, lambda tmp: pq.write_table(table, tmp))


def write_json_atomic(obj: Any, target: Path) -> Path:
    return write_atomic(
        target, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    )


def write_text_atomic(text: str, target: Path) -> Path:
    return write_atomic(target, lambda tmp: tmp.write_text(text))


# A spreadsheet runs a cell starting with one of these as a formula: a label such as
# '=HYPERLINK("http://evil")' would (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_csv_cell(text: str) -> str:
    """``text`` as a CSV cell no spreadsheet runs: prefixed with ``'`` when it starts with
    ``=``, ``+``, ``-``, ``@``, a tab or a carriage return (OWASP's advice)."""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def write_csv_table(frame: pd.DataFrame, path: Path) -> None:
    """``frame`` as CSV (floats with 6 decimals), its header and text cells made safe."""
    safe = frame.rename(columns=lambda c: safe_csv_cell(str(c)))
    for col in safe.select_dtypes(exclude="number").columns:
        safe[col] = safe[col].map(lambda v: safe_csv_cell(v) if isinstance(v, str) else v)
    safe.to_csv(path, index=False, float_format="%.6f")


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (hex): what a model file's predictions depend on."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_problem(directory: Path) -> str | None:
    """Why no file can be created in ``directory``, or None when one can.

    Asks ``os.access`` and then writes and removes a small file: root passes the
    permission check on a folder it may still not write (a read-only mount).
    """
    if not directory.is_dir():
        return f"{directory} is not a directory"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"{directory} is read-only (no write permission)"
    try:
        fd, probe = tempfile.mkstemp(prefix=".audiotag-probe-", dir=directory)
        try:
            os.write(fd, b"probe")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return f"{directory} is read-only ({err.strerror})"
        return f"cannot write in {directory} ({err.strerror})"
    return None


class BusyError(RuntimeError, UsageError):
    """Another process holds the lock on a directory this one needs."""


@contextmanager
def exclusive(directory: Path, what: str) -> Iterator[None]:
    """Holds an exclusive lock on ``directory`` (``.lock`` inside) or says who has it.

    Two runs on one work dir must not train the same fold at once: the second
    gets a clear error instead of interleaving checkpoints with the first.
    """
    directory.mkdir(parents=True, exist_ok=True)
    lock = directory / ".lock"
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise BusyError(
                f"{what} is being trained by another run (pid {holder}) in {directory}; "
                "re-run when it has finished and this run takes its result from there"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
