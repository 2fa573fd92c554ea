"""Faults around the flow: a tracking server that is down, and the checks of the flow's
first step for runs started from the UI (the CLI makes them before the flow starts)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.layouts import curated_clips, write_csv, write_layout


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One temporary Prefect server for the module's flow runs."""
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_HOME", str(home))
        mp.delenv("PREFECT_API_URL", raising=False)
        with prefect_test_harness(server_startup_timeout=120):
            yield


def test_a_tracking_server_that_is_down_fails_the_run_fast_with_that_cause(
    harness: None, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.train import train_flow

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    state = train_flow(
        source=str(isolated_env / "nowhere"), workdir=str(isolated_env / "w"), return_state=True
    )
    assert state.is_failed()
    with pytest.raises(Exception, match=rf"127.0.0.1:{port} is not reachable"):
        state.result()
    assert not (isolated_env / "w" / "data").exists()  # no work was started


def test_a_flow_started_from_the_ui_checks_the_csvs_before_reading_audio(
    harness: None, isolated_env: Path
) -> None:
    from audiotag.data.layout import LayoutError
    from flows.train import train_flow

    data = write_layout(
        isolated_env / "data", ("Bark", "Meow"), {"curated": curated_clips(4, ("Bark", "Meow"))}
    )
    write_csv(data / "train_curated.csv", ["fname", "label"], [["c000.wav", "Bark"]])
    work = isolated_env / "w"
    state = train_flow(source=str(data), workdir=str(work), preset="debug", return_state=True)
    assert state.is_failed()
    with pytest.raises(LayoutError, match="train_curated.csv: no 'labels' column"):
        state.result()
    assert not (work / "metadata.parquet").exists() and not (work / "mlflow.db").exists()
