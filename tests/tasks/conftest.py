"""Fixtures for the task tests: one temporary Prefect server for the whole package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="package")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real temporary Prefect server, its home and result storage in a temporary folder.

    Started once for every test under ``tests/tasks`` that asks for it (a start takes
    20 s on a busy machine); yields that folder. MLflow tracks into each test's work
    dir (no ``MLFLOW_TRACKING_URI``).
    """
    from prefect.settings import PREFECT_HOME, PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    tmp = tmp_path_factory.mktemp("prefect")
    home, results = tmp / "prefect-home", tmp / "prefect-results"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_HOME", str(home))
        mp.setenv("PREFECT_LOCAL_STORAGE_PATH", str(results))
        mp.delenv("PREFECT_API_URL", raising=False)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        # Prefect may have read its settings before the variables were set.
        with (
            temporary_settings(updates={PREFECT_HOME: home, PREFECT_LOCAL_STORAGE_PATH: results}),
            prefect_test_harness(server_startup_timeout=120),
        ):
            yield tmp
