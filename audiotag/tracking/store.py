"""Whether the tracking store can be opened, checked before any work (no MLflow import).

The CLI runs these checks before the flow's temporary server starts, so importing
MLflow (seconds) must not be part of them: an SQLite store is opened with ``sqlite3``,
a tracking server is asked for its ``/health``.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

from audiotag.errors import UsageError
from audiotag.storage import write_problem


class TrackingUnavailableError(RuntimeError, UsageError):
    """The tracking store cannot be reached or opened: the run fails fast, before any work."""


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """For an http(s) tracking URI, one quick request to its /health endpoint."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout).close()
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise TrackingUnavailableError(
            f"MLflow tracking server {uri} is not reachable ({reason}); start it, or unset "
            "MLFLOW_TRACKING_URI to track in the work dir's SQLite file"
        ) from None


def _sqlite_path(uri: str) -> Path:
    # sqlite:////abs/path and sqlite:///relative/path, as SQLAlchemy reads them.
    return Path(uri.removeprefix("sqlite:///"))


def check_sqlite(path: Path, uri: str) -> None:
    """An SQLite store: a database file MLflow can open and write, or a folder to make one in.

    Raises:
        TrackingUnavailableError: naming the file and the cause.
    """
    where = f"MLflow tracking store {uri}"
    if path.is_dir():
        raise TrackingUnavailableError(f"{where}: {path} is a directory, not an SQLite file")
    if not path.parent.is_dir():
        raise TrackingUnavailableError(f"{where}: its folder {path.parent} does not exist")
    problem = write_problem(path.parent)  # SQLite writes its journal beside the file
    if problem is not None:
        raise TrackingUnavailableError(f"{where} cannot be written: {problem}")
    if not path.exists():
        return
    try:
        with open(path, "rb+"):  # opened for writing, nothing written
            pass
        db = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, timeout=5)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            db.close()
    except OSError as err:
        why = err.strerror
        raise TrackingUnavailableError(f"{where}: {path} cannot be opened ({why})") from None
    except sqlite3.Error as err:
        raise TrackingUnavailableError(f"{where}: {path} cannot be opened ({err})") from None


def check_tracking_store(uri: str) -> None:
    """Raises TrackingUnavailableError when the store at ``uri`` cannot be used; quick.

    An http(s) server must answer; an SQLite file must open and be writable; a file
    store's folder (``file://`` or a plain path) must be writable. Other schemes
    (databricks, postgresql, ...) are left to MLflow.
    """
    if uri.startswith(("http://", "https://")):
        check_reachable(uri)
    elif uri.startswith("sqlite:///"):
        check_sqlite(_sqlite_path(uri), uri)
    elif uri.startswith("file:") or "://" not in uri:
        folder = Path(uri.removeprefix("file://").removeprefix("file:"))
        anchor = folder if folder.exists() else folder.parent
        problem = write_problem(anchor)
        if problem is not None:
            raise TrackingUnavailableError(
                f"MLflow tracking store {uri} cannot be written: {problem}"
            )


def model_store_uri(model_uri: str, tracking_uri: str | None = None) -> str:
    """The tracking store that holds ``model_uri`` (``models:/NAME@champion``,
    ``runs:/...``): ``tracking_uri``, else ``MLFLOW_TRACKING_URI``; checked, never made.

    Without either MLflow would read (and create) ``mlflow.db`` in the current folder,
    and an SQLite URI naming no file would make an empty store: both only say that
    the model does not exist.

    Raises:
        TrackingUnavailableError: one line saying what to set, or what is wrong.
    """
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise TrackingUnavailableError(
            f"{model_uri} names a model in an MLflow store: set MLFLOW_TRACKING_URI to that "
            "store (a training work dir's is sqlite:///<workdir>/mlflow.db), or give a "
            "model package's path"
        )
    if uri.startswith("sqlite:///") and not _sqlite_path(uri).is_file():
        raise TrackingUnavailableError(
            f"MLflow tracking store {uri}: {_sqlite_path(uri)} does not exist; set "
            "MLFLOW_TRACKING_URI to the store that registered the model"
        )
    check_tracking_store(uri)
    return uri
