"""Faults around the flow: a tracking server that is down."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest


def test_a_tracking_server_that_is_down_fails_the_run_fast_with_that_cause(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from flows.train import train_flow

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    with prefect_test_harness(server_startup_timeout=120):
        state = train_flow(
            source=str(isolated_env / "nowhere"), workdir=str(isolated_env / "w"), return_state=True
        )
    assert state.is_failed()
    with pytest.raises(Exception, match=rf"127.0.0.1:{port} is not reachable"):
        state.result()
    assert not (isolated_env / "w" / "data").exists()  # no work was started
