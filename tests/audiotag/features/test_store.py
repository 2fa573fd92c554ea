from pathlib import Path

import numpy as np
import pytest
import torch

from audiotag.config import MelSettings
from audiotag.features.audio import AudioReadError, find_nonsilent, read_audio
from audiotag.features.files import file_logmel
from audiotag.features.logmel import FLOOR_DB
from audiotag.features.store import (
    PAD_DB,
    FeatureStore,
    build_feature_store,
    gather_windows,
    gather_windows_torch,
)


def _rows(drums_dir: Path, mel: MelSettings, n: int = 6) -> list[dict]:
    rows = []
    for path in sorted(drums_dir.glob("*.wav"))[:n]:
        samples, _ = read_audio(path)
        iv = find_nonsilent(samples, mel.silence_top_db)
        rows.append(
            {
                "fname": path.name,
                "subset": "curated",
                "path": path.name,
                "nonsilent": [{"start": int(s), "end": int(e)} for s, e in iv],
                "silence_top_db": mel.silence_top_db,
            }
        )
    return rows


def test_gather_pads_short_clips_with_silence() -> None:
    data = np.arange(20 * 3, dtype=np.float32).reshape(20, 3)
    out = gather_windows(data, np.array([5]), np.array([4]), np.array([0]), 6)
    np.testing.assert_array_equal(out[0, :4], data[5:9])
    assert (out[0, 4:] == PAD_DB).all()
    assert PAD_DB == FLOOR_DB == -100.0


def test_store_of_real_recordings(drums_dir: Path, tmp_path: Path) -> None:
    mel = MelSettings()
    rows = _rows(drums_dir, mel)
    root = build_feature_store(rows, drums_dir, mel, tmp_path / "store")
    store = FeatureStore.open(root)
    assert store.data.shape[1] == 128 and isinstance(store.data, np.memmap)
    offsets, frames = store.locate([("curated", r["fname"]) for r in rows])
    assert offsets[0] == 0 and np.all(offsets[1:] == np.cumsum(frames)[:-1])
    assert np.isfinite(store.data).all()
    # Built once: a second call returns the existing store untouched.
    mtime = (root / "data.f32").stat().st_mtime_ns
    build_feature_store(rows, drums_dir, mel, tmp_path / "store")
    assert (root / "data.f32").stat().st_mtime_ns == mtime


def test_store_holds_what_tagging_computes(drums_dir: Path, tmp_path: Path) -> None:
    # The store's clip is file_logmel's: the very function Ensemble.features calls.
    mel = MelSettings(n_mels=64)
    rows = _rows(drums_dir, mel, n=3)
    store = FeatureStore.open(build_feature_store(rows, drums_dir, mel, tmp_path / "store"))
    for row in rows:
        offset, frames = store.index[("curated", row["fname"])]
        tagged = file_logmel(drums_dir / row["path"], mel)
        np.testing.assert_array_equal(store.data[offset : offset + frames], tagged)


def test_store_refuses_rows_without_their_threshold(drums_dir: Path, tmp_path: Path) -> None:
    mel = MelSettings()
    rows = [{k: v for k, v in r.items() if k != "silence_top_db"} for r in _rows(drums_dir, mel)]
    with pytest.raises(ValueError, match="silence_top_db None"):
        build_feature_store(rows, drums_dir, mel, tmp_path / "store")


def test_a_failed_build_leaves_nothing_behind(drums_dir: Path, tmp_path: Path) -> None:
    mel = MelSettings()
    rows = _rows(drums_dir, mel, n=2)
    rows.append({**rows[0], "fname": "gone.wav", "path": "gone.wav"})
    with pytest.raises(AudioReadError, match="gone.wav: no such file"):
        build_feature_store(rows, drums_dir, mel, tmp_path / "store")
    assert list(tmp_path.iterdir()) == []


def test_torch_gather_equals_numpy_gather() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(500, 8)).astype(np.float32)
    offsets, frames = np.array([0, 100, 130, 400]), np.array([100, 30, 270, 100])
    starts = np.array([10, 0, 200, 90])
    ref = gather_windows(data, offsets, frames, starts, 16)
    got = gather_windows_torch(
        torch.from_numpy(data), *(torch.from_numpy(a) for a in (offsets, frames, starts)), 16
    )
    np.testing.assert_array_equal(got.numpy(), ref)
