"""audiotag/tracking/store.py: a tracking store that cannot be opened is named before any
work, on a real MLflow SQLite store; MLflow is not imported by the check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from audiotag.steps.workspace import Workspace
from audiotag.tracking.runs import start_parent
from audiotag.tracking.store import TrackingUnavailableError, check_tracking_store
from tests.helpers.workdirs import read_only_dir


def test_a_real_mlflow_store_passes_and_a_new_one_needs_only_a_writable_folder(
    workdir: Path,
) -> None:
    ws = Workspace.at(workdir)
    with pytest.raises(TrackingUnavailableError, match="its folder .* does not exist"):
        check_tracking_store(ws.tracking_uri)
    ws.root.mkdir()  # the work dir check makes it
    check_tracking_store(ws.tracking_uri)  # no file yet: MLflow's first run makes it
    start_parent(workdir, "run-1", {}, {})
    assert ws.mlflow_db.is_file()
    check_tracking_store(ws.tracking_uri)


def test_a_store_that_is_a_directory_or_not_a_database_is_named(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    db.mkdir()
    with pytest.raises(TrackingUnavailableError, match="is a directory, not an SQLite file"):
        check_tracking_store(f"sqlite:///{db}")
    db.rmdir()
    db.write_bytes(b"these bytes are no database" * 100)
    with pytest.raises(TrackingUnavailableError, match=r"cannot be opened \(file is not a data"):
        check_tracking_store(f"sqlite:///{db}")


def test_a_store_in_a_read_only_folder_is_named_read_only(tmp_path: Path) -> None:
    with read_only_dir(tmp_path / "ro") as ro:
        with pytest.raises(TrackingUnavailableError, match="cannot be written: .* is read-only"):
            check_tracking_store(f"sqlite:///{ro}/mlflow.db")
        with pytest.raises(TrackingUnavailableError, match="read-only"):
            check_tracking_store(f"file://{ro}/mlruns")


def test_checking_the_store_imports_no_mlflow() -> None:
    code = (
        "import sys; from audiotag.tracking.store import check_tracking_store; "
        "check_tracking_store('sqlite:////tmp/audiotag-check-probe.db'); "
        "print('mlflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
