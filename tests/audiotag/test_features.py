from pathlib import Path

import numpy as np
import torch
import torchaudio

from audiotag.config import MelSettings, load_config
from audiotag.features.audio import find_nonsilent, read_audio
from audiotag.features.store import (
    PAD_DB,
    FeatureStore,
    LogMel,
    build_feature_store,
    clamp_top_db,
    gather_windows,
)
from audiotag.training.batches import window_starts


def test_logmel_matches_torchaudio_melspectrogram() -> None:
    mel = load_config("reference").mel
    wave = torch.randn(44100) * 0.1
    ours = LogMel(mel)(wave)
    ref = torchaudio.transforms.MelSpectrogram(
        sample_rate=mel.sample_rate,
        n_fft=mel.n_fft,
        win_length=mel.win_length,
        hop_length=mel.hop_length,
        f_min=mel.f_min,
        f_max=mel.f_max,
        n_mels=mel.n_mels,
        power=2.0,
        norm=None,
        mel_scale="htk",
        pad_mode="constant",
    )(wave)
    ref_db = 10 * torch.log10(ref.clamp_min(1e-10))
    assert ours.shape == (128, 1 + 44100 // 690)
    torch.testing.assert_close(ours, ref_db, atol=1e-3, rtol=1e-4)


def test_top_db_is_per_crop_not_per_batch() -> None:
    loud = torch.full((1, 4, 4), -10.0)
    quiet = torch.full((1, 4, 4), -90.0)
    quiet[0, 0, 0] = -70.0
    out = clamp_top_db(torch.cat([loud, quiet]), 60.0)
    # The quiet crop keeps 60 dB below its own peak; clamping against the batch's
    # loudest crop would have lifted it to -70 everywhere.
    assert out[1].min() == -90.0 and out[1].max() == -70.0


def test_windows_cover_whole_clip() -> None:
    assert window_starts(10, 64, 0.5).tolist() == [0]
    starts = window_starts(300, 64, 0.5)
    assert starts[0] == 0 and starts[-1] == 300 - 64
    assert np.all(np.diff(starts) <= 32)


def test_gather_pads_short_clips_with_silence() -> None:
    data = np.arange(20 * 3, dtype=np.float32).reshape(20, 3)
    out = gather_windows(data, np.array([5]), np.array([4]), np.array([0]), 6)
    np.testing.assert_array_equal(out[0, :4], data[5:9])
    assert (out[0, 4:] == PAD_DB).all()


def test_store_of_real_recordings(drums_dir: Path, tmp_path: Path) -> None:
    mel = MelSettings()
    rows = []
    for path in sorted(drums_dir.glob("*.wav"))[:6]:
        samples, _ = read_audio(path)
        iv = find_nonsilent(samples)
        rows.append(
            {
                "fname": path.name,
                "subset": "curated",
                "path": path.name,
                "nonsilent": [{"start": int(s), "end": int(e)} for s, e in iv],
            }
        )
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


def test_torch_gather_equals_numpy_gather() -> None:
    from audiotag.features.store import gather_windows_torch

    rng = np.random.default_rng(0)
    data = rng.normal(size=(500, 8)).astype(np.float32)
    offsets, frames = np.array([0, 100, 130, 400]), np.array([100, 30, 270, 100])
    starts = np.array([10, 0, 200, 90])
    ref = gather_windows(data, offsets, frames, starts, 16)
    got = gather_windows_torch(
        torch.from_numpy(data), *(torch.from_numpy(a) for a in (offsets, frames, starts)), 16
    )
    np.testing.assert_array_equal(got.numpy(), ref)
