"""Fixtures for the MLflow side: a work dir whose SQLite store lies in tmp_path, and tiny
model packages (untrained quarter-width nets: seconds to build, nothing to train)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.helpers.packages import VOCAB, write_tiny_package


@pytest.fixture(scope="session")
def vocab() -> tuple[str, ...]:
    """The labels of the packages below."""
    return VOCAB


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A work dir that tracks to its own SQLite file (no MLFLOW_TRACKING_URI, no UI address)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("AUDIOTAG_MLFLOW_UI", raising=False)
    return tmp_path / "work"


@pytest.fixture(scope="session")
def make_package(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    """``make_package(seed)``: a one-fold model package on ``VOCAB``; equal seeds, equal files."""
    return lambda seed: write_tiny_package(tmp_path_factory.mktemp(f"package-{seed}"), seed, VOCAB)


@pytest.fixture(scope="session")
def package(make_package: Callable[[int], Path]) -> Path:
    return make_package(0)


@pytest.fixture(scope="session")
def tone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1 s, 440 Hz sine WAV (16-bit, 44.1 kHz)."""
    sr = 44100
    y = 0.5 * np.sin(2 * np.pi * 440.0 * np.arange(sr) / sr)
    path = tmp_path_factory.mktemp("audio") / "tone.wav"
    sf.write(path, y.astype(np.float32), sr, subtype="PCM_16")
    return path
