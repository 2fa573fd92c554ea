"""What the bench scripts share: the machine's name, RESULTS.md, the demo data, the
librosa baseline and a throw-away Prefect server.

A package (not ``bench/*.py``) so that tests/test_bench.py does not run it as a script.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from audiotag.config import MelSettings

RESULTS = Path(__file__).resolve().parents[1] / "RESULTS.md"


def machine() -> str:
    """``CPU <model>, <cores> cores, <threads> torch threads`` (or the GPU's name)."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"CPU {model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def write_section(script: str, body: str) -> None:
    """Appends ``### <script> — <machine>, <date>`` and ``body`` to bench/RESULTS.md."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with RESULTS.open("a") as f:
        f.write(f"\n### {script} — {machine()}, {stamp}\n\n{body.rstrip()}\n")
    print(f"appended to {RESULTS}")


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def best_of(samples: list[float]) -> float:
    """The fastest repeat: on a shared machine the others carry other people's load."""
    return min(samples)


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def prepare_demo(root: Path, scale: float, seed: int = 0) -> tuple[Path, list[dict]]:
    """The demo dataset unpacked under ``root/data``, with its kept metadata rows.

    Returns:
        ``(data_dir, rows)``: rows as audiotag's ``kept.parquet`` holds them
        (``fname``, ``subset``, ``path``, ``duration``, ``nonsilent``, ...).
    """
    from audiotag.data.filtering import filter_corrupt
    from audiotag.data.metadata import extract_metadata
    from audiotag.sources.archive import unpack_competition
    from audiotag.sources.demo import write_demo_dataset

    archive = write_demo_dataset(root / "src", seed=seed, scale=scale)
    data_dir = unpack_competition(archive, root / "data")
    extract_metadata(data_dir, root / "metadata.parquet")
    filter_corrupt(root / "metadata.parquet", root / "kept.parquet", root / "rejected.parquet")
    return data_dir, pq.read_table(root / "kept.parquet").to_pylist()


# --- the librosa baseline: what a user writes without audiotag ---------------------------


def librosa_clip(path: Path, mel: MelSettings) -> np.ndarray:
    """librosa.load, effects.split(top_db=20), the non-silent parts concatenated."""
    import librosa

    y, _ = librosa.load(path, sr=mel.sample_rate)
    intervals = librosa.effects.split(y, top_db=mel.silence_top_db)
    return np.concatenate([y[s:e] for s, e in intervals]) if len(intervals) else y


def librosa_logmel(y: np.ndarray, mel: MelSettings, top_db: float | None) -> np.ndarray:
    """``(n_mels, frames)`` dB log-mel with the recipe's settings (htk, no norm)."""
    import librosa

    power = librosa.feature.melspectrogram(
        y=y,
        sr=mel.sample_rate,
        n_fft=mel.n_fft,
        hop_length=mel.hop_length,
        win_length=mel.win_length,
        n_mels=mel.n_mels,
        fmin=mel.f_min,
        fmax=mel.f_max,
        htk=True,
        norm=None,
    )
    return librosa.power_to_db(power, top_db=top_db)


def librosa_features(path: Path, mel: MelSettings) -> np.ndarray:
    """A file's full-clip features, the baseline's one-off feature stage."""
    return librosa_logmel(librosa_clip(path, mel), mel, mel.top_db)


def librosa_train_item(
    path: Path, mel: MelSettings, crop_frames: int, rng: np.random.Generator
) -> np.ndarray:
    """One training item as a notebook Dataset's ``__getitem__`` makes it every epoch.

    Load, split, a random 2 s crop (zero-padded when shorter), mel, dB.
    """
    y = librosa_clip(path, mel)
    # crop_frames frames of hop_length span (crop_frames - 1) hops of samples (center=True).
    n = (crop_frames - 1) * mel.hop_length
    if len(y) > n:
        start = int(rng.integers(0, len(y) - n + 1))
        y = y[start : start + n]
    else:
        y = np.pad(y, (0, n - len(y)))
    return librosa_logmel(y, mel, mel.top_db)


# --- a throw-away Prefect server, as the flow tests use ----------------------------------


@contextlib.contextmanager
def prefect_sandbox(tmp: Path) -> Iterator[None]:
    """A temporary Prefect server (``prefect_test_harness``) with its home under ``tmp``.

    MLflow tracks to the work dir's SQLite file (MLFLOW_TRACKING_URI unset).
    """
    env = {
        "PREFECT_HOME": str(tmp / "prefect-home"),
        "PREFECT_LOCAL_STORAGE_PATH": str(tmp / "prefect-results"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    saved = {k: os.environ.get(k) for k in [*env, "MLFLOW_TRACKING_URI", "PREFECT_API_URL"]}
    os.environ.update(env)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("PREFECT_API_URL", None)
    try:
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=120):
            yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
