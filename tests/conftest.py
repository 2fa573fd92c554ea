"""Shared fixtures: real recordings, small synthetic audio, isolated Prefect/MLflow homes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

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


def write_tone(
    path: Path,
    freq: float = 440.0,
    seconds: float = 1.0,
    sr: int = 44100,
    amp: float = 0.5,
    subtype: str = "PCM_16",
    channels: int = 1,
    start: float = 0.0,
    total: float | None = None,
) -> Path:
    """A sine burst of ``seconds`` at ``start`` in a clip of ``total`` seconds."""
    total = total if total is not None else start + seconds
    y = np.zeros(int(total * sr), dtype=np.float32)
    t = np.arange(int(seconds * sr)) / sr
    s = int(start * sr)
    y[s : s + len(t)] = amp * np.sin(2 * np.pi * freq * t)[: len(y) - s]
    data = np.stack([y] * channels, axis=1) if channels > 1 else y
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, sr, subtype=subtype)
    return path


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Prefect home and MLflow store inside tmp_path."""
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.setenv("PREFECT_LOCAL_STORAGE_PATH", str(tmp_path / "prefect-results"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    return tmp_path
