"""Shared fixtures: real recordings, small synthetic audio, isolated Prefect/MLflow homes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DRUMS = ROOT.parent / "shared" / "data" / "drums"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def drums_dir() -> Path:
    """../shared/data/drums: 48 real drum one-shots (6 classes); absent only outside CI."""
    if not (DRUMS / "labels.csv").exists():
        if os.environ.get("CI"):
            pytest.fail(f"{DRUMS} is missing: CI must have ../shared beside the clone")
        pytest.skip(f"{DRUMS} is absent (a clone without ../shared)")
    return DRUMS


@pytest.fixture(scope="session")
def debug_preset() -> str:
    """The preset the tests and ``--tiny`` benches train on: seconds on a CPU."""
    from audiotag.config import PRESETS

    assert "debug" in PRESETS
    return "debug"


@pytest.fixture(scope="session")
def debug_config():
    """``debug_config(**overrides)``: the debug preset with dotted-key overrides."""
    from audiotag.config import load_config

    return lambda **overrides: load_config("debug", overrides)


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Prefect home and MLflow store inside tmp_path."""
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.setenv("PREFECT_LOCAL_STORAGE_PATH", str(tmp_path / "prefect-results"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    return tmp_path
