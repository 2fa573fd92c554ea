import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio

from audiotag.config import MelSettings, load_config
from audiotag.features.audio import AudioReadError, find_nonsilent, read_audio, remove_silence
from audiotag.features.files import file_logmel
from audiotag.features.logmel import (
    FLOOR_DB,
    LogMel,
    blocks_logmel,
    clamp_top_db,
    compute_logmel,
    log_mel_spectrogram,
    resample,
)
from tests.helpers.audio import write_bursts, write_tone

ARGS = {
    "sample_rate": 16000,
    "n_fft": 512,
    "win_length": 400,
    "hop_length": 160,
    "n_mels": 40,
    "f_min": 20.0,
    "f_max": 8000.0,
}


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


def test_functional_and_module_agree_exactly() -> None:
    mel = MelSettings(**ARGS)
    wave = torch.randn(16000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(log_mel_spectrogram(wave, **ARGS), LogMel(mel)(wave), rtol=0, atol=0)


def test_batched_equals_per_item_and_keeps_leading_dims() -> None:
    waves = torch.randn(2, 3, 4000, generator=torch.Generator().manual_seed(1))
    out = log_mel_spectrogram(waves, **ARGS)
    assert out.shape == (2, 3, ARGS["n_mels"], 1 + 4000 // ARGS["hop_length"])
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(out[i, j], log_mel_spectrogram(waves[i, j], **ARGS))


def test_silence_reads_as_the_floor() -> None:
    out = log_mel_spectrogram(torch.zeros(1600), **ARGS)
    assert (out == FLOOR_DB).all() and FLOOR_DB == -100.0


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"sample_rate": 0}, "sample_rate must be positive, got 0"),
        ({"n_fft": -2}, "n_fft must be positive, got -2"),
        ({"hop_length": 0}, "hop_length must be positive, got 0"),
        ({"n_mels": 0}, "n_mels must be positive, got 0"),
        ({"win_length": 1024}, "win_length 1024 exceeds n_fft 512"),
        ({"f_min": 9000.0}, "f_min 9000.0"),
        ({"f_min": -1.0}, "f_min -1.0"),
        ({"f_max": 9000.0, "sample_rate": 16000}, r"f_max 9000.0 is above Nyquist \(8000.0\)"),
    ],
)
def test_bad_arguments_are_named(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        log_mel_spectrogram(torch.zeros(1600), **{**ARGS, **change})


def test_an_empty_waveform_is_refused() -> None:
    with pytest.raises(ValueError, match=r"got \(0,\)"):
        log_mel_spectrogram(torch.zeros(0), **ARGS)


def test_top_db_is_per_crop_not_per_batch() -> None:
    loud = torch.full((1, 4, 4), -10.0)
    quiet = torch.full((1, 4, 4), -90.0)
    quiet[0, 0, 0] = -70.0
    out = clamp_top_db(torch.cat([loud, quiet]), 60.0)
    # The quiet crop keeps 60 dB below its own peak; clamping against the batch's
    # loudest crop would have lifted it to -70 everywhere.
    assert out[1].min() == -90.0 and out[1].max() == -70.0
    with pytest.raises(ValueError, match="top_db must be positive, got 0"):
        clamp_top_db(loud, 0)


def test_file_logmel_is_read_split_resample_logmel(tmp_path: Path) -> None:
    mel = MelSettings(**ARGS)
    path = write_tone(tmp_path / "late.wav", seconds=0.5, start=1.0, total=2.0, sr=22050)
    samples, sr = read_audio(path)
    iv = find_nonsilent(samples, mel.silence_top_db)
    expected = compute_logmel(remove_silence(samples, iv), sr, mel)
    assert expected.shape[1] == ARGS["n_mels"]
    # About half a second at 16 kHz, not the file's two seconds.
    assert 0.45 * 16000 / 160 < len(expected) < 0.65 * 16000 / 160
    np.testing.assert_array_equal(file_logmel(path, mel), expected)
    np.testing.assert_array_equal(file_logmel(path, mel, iv), expected)
    with path.open("rb") as f:
        np.testing.assert_array_equal(file_logmel(f, mel, name="late.wav"), expected)


def test_file_logmel_of_digital_silence_is_an_error(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "zero.wav", amp=0.0)
    with pytest.raises(AudioReadError, match="zero.wav: no sound"):
        file_logmel(path, MelSettings(**ARGS))
    with pytest.raises(AudioReadError, match="upload.wav: no sound"):
        file_logmel(io.BytesIO(path.read_bytes()), MelSettings(**ARGS), name="upload.wav")


@pytest.mark.parametrize("sr", [44101, 47311, 17332, 48000])
def test_a_recording_at_an_odd_rate_is_resampled_in_bounded_memory(tmp_path: Path, sr: int) -> None:
    # torchaudio's kernel for 44101 -> 44100 Hz alone is 44100 x 44101 floats (8 GB): a
    # real recording at such a rate (sample libraries have them) ran the machine out of
    # memory. Its features match the same tone recorded at the model's rate.
    mel = load_config("demo").mel
    odd = write_tone(tmp_path / "odd.wav", freq=1000.0, seconds=1.0, sr=sr)
    ref = write_tone(tmp_path / "ref.wav", freq=1000.0, seconds=1.0, sr=mel.sample_rate)
    a, b = file_logmel(odd, mel), file_logmel(ref, mel)
    assert abs(len(a) - len(b)) <= 1
    n = min(len(a), len(b))
    assert (a[:n].argmax(axis=1) == b[:n].argmax(axis=1)).mean() > 0.9
    # The tone's bands agree; far below it, the floor of leakage differs with the rate.
    ma, mb = a[2 : n - 2].mean(0), b[2 : n - 2].mean(0)
    loud = mb > mb.max() - 30
    np.testing.assert_allclose(ma[loud], mb[loud], atol=1.5)


# Blocks and the whole signal differ by float32 rounding of the resampled wave (about
# 1e-7); bands above a low rate's Nyquist hold only that rounding, 60 dB down, where it
# reads as a few hundredths of a dB.
ROUNDING = 1e-3


@pytest.mark.parametrize("sr", [44100, 48000, 16000, 44101])
def test_a_file_read_in_blocks_gives_the_whole_file_features(tmp_path: Path, sr: int) -> None:
    """Blocks of 3000 frames (a clip of 30 of them, many silences across their edges)
    give the features of the file read whole, silences cut, resampled and framed at once
    (the path before blocks): resampling (torchaudio's kernel, soxr's at an odd rate) and
    the STFT take each block with its context, so only float rounding differs."""
    mel = load_config("debug").mel
    path = write_bursts(tmp_path / "long.wav", seconds=90000 / sr, sr=sr)
    samples, _ = read_audio(path)
    intervals = find_nonsilent(samples, mel.silence_top_db)
    assert len(intervals) > 3
    whole = LogMel(mel)(resample(remove_silence(samples, intervals), sr, mel.sample_rate))
    for block in (3000, 1 << 20):
        found = file_logmel(path, mel, block_frames=block)
        given = file_logmel(path, mel, intervals, block_frames=block)
        assert found.shape == given.shape == whole.T.shape
        assert np.array_equal(found, given)
        np.testing.assert_allclose(found, whole.T.numpy(), rtol=ROUNDING, atol=0.01)


def test_a_long_file_is_framed_and_resampled_in_blocks_like_a_whole_one() -> None:
    rng = np.random.default_rng(1)
    mel = load_config("debug").mel
    x = (rng.standard_normal(96000) * np.linspace(0, 1, 96000) ** 2).astype(np.float32)
    for sr in (48000, 8000):
        whole = resample(x, sr, mel.sample_rate).numpy()
        for block in (1000, 4097):
            parts = (x[i : i + block] for i in range(0, len(x), block))
            feats = blocks_logmel(parts, sr, mel)
            ref = LogMel(mel)(torch.from_numpy(whole)).T.numpy()
            np.testing.assert_allclose(feats, ref, rtol=ROUNDING, atol=0.01)
    assert blocks_logmel([x], 44100, mel).shape == (1 + len(x) // mel.hop_length, mel.n_mels)
