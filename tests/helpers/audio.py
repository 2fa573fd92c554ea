"""Small synthetic audio written to disk for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


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


def write_bursts(
    path: Path, seconds: float, sr: int = 44100, channels: int = 2, seed: int = 0
) -> Path:
    """Noise bursts of changing loudness between silences (stereo 16-bit by default):
    a clip with many non-silent intervals, for reading it in blocks."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    step = 4096  # a loudness every two silence frames, a silence every other
    levels = np.tile([0.8, 0.0, 0.3, 0.01, 0.5, 0.0], n // (6 * step) + 1)
    gain = np.repeat(levels, step)[:n]
    y = (rng.standard_normal((n, channels)) * 0.3 * gain[:, None]).clip(-1, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y.astype(np.float32), sr, subtype="PCM_16")
    return path
