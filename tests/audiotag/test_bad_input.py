"""Messy real-world input: every case ends in a recorded rejection or a clear error."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiotag.config import load_config
from audiotag.data.filtering import (
    REASON_DUPLICATE,
    REASON_MISSING,
    REASON_NO_LABELS,
    REASON_UNLISTED,
    REASON_UNREADABLE,
    filter_corrupt,
)
from audiotag.data.metadata import describe_file, extract_metadata
from audiotag.features.audio import AudioReadError, read_audio
from audiotag.features.store import FeatureStore, build_feature_store
from audiotag.inference.tagging import Ensemble

SR = 44100


def _tone(seconds: float, sr: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return np.stack([y] * channels, axis=1) if channels > 1 else y


def _wav_with_extra_chunks(path: Path) -> None:
    buf = io.BytesIO()
    sf.write(buf, _tone(0.5), SR, format="WAV", subtype="PCM_16")
    raw = buf.getvalue()
    junk = b"LIST" + struct.pack("<I", 12) + b"INFOISFT\x04\x00\x00\x00test"[:12]
    body = raw[12:]
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(junk) + len(body)) + b"WAVE" + junk + body)


GOOD = {
    "pcm8.wav": lambda p: sf.write(p, _tone(0.5), SR, subtype="PCM_U8"),
    "pcm24.wav": lambda p: sf.write(p, _tone(0.5), SR, subtype="PCM_24"),
    "pcm32.wav": lambda p: sf.write(p, _tone(0.5), SR, subtype="PCM_32"),
    "float.wav": lambda p: sf.write(p, _tone(0.5), SR, subtype="FLOAT"),
    "double.wav": lambda p: sf.write(p, _tone(0.5), SR, subtype="DOUBLE"),
    "stereo.wav": lambda p: sf.write(p, _tone(0.5, channels=2), SR),
    "six channels.wav": lambda p: sf.write(p, _tone(0.5, channels=6), SR),
    "8k.wav": lambda p: sf.write(p, _tone(0.5, 8000), 8000),
    "16k.wav": lambda p: sf.write(p, _tone(0.5, 16000), 16000),
    "48k.wav": lambda p: sf.write(p, _tone(0.5, 48000), 48000),
    "one_ms.wav": lambda p: sf.write(p, _tone(0.001), SR),
    "ten_minutes.wav": lambda p: sf.write(p, np.tile(_tone(1.0), 600), SR),
    "extra_chunks.wav": _wav_with_extra_chunks,
    "naïve café ü.wav": lambda p: sf.write(p, _tone(0.5), SR),
}


def _nan_wav(path: Path) -> None:
    y = _tone(0.5)
    y[100], y[200] = np.nan, np.inf
    sf.write(path, y, SR, subtype="FLOAT")


BAD = {
    "empty.wav": lambda p: p.write_bytes(b""),
    "truncated.wav": lambda p: p.write_bytes(b"RIFF\x24\x08\x00\x00WAVEfmt "),
    "random.wav": lambda p: p.write_bytes(np.random.default_rng(0).bytes(4000)),
    "nan.wav": _nan_wav,
}


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("messy")
    cur = root / "train_curated"
    cur.mkdir()
    for name, make in {**GOOD, **BAD}.items():
        make(cur / name)
    sf.write(cur / "no_csv_names_me.wav", _tone(0.5), SR)
    sf.write(cur / "unlabelled.wav", _tone(0.5), SR)
    sf.write(cur / "dup.wav", _tone(0.5), SR)
    lines = [f"{name},Bark" for name in [*GOOD, *BAD]]
    lines += ["missing.wav,Bark", "unlabelled.wav,", "dup.wav,Bark", "dup.wav,Run"]
    # A BOM and CRLF line ends, as spreadsheet exports write them.
    text = "\ufefffname,labels\r\n" + "\r\n".join(lines) + "\r\n"
    (root / "train_curated.csv").write_bytes(text.encode("utf-8"))
    return root


@pytest.fixture(scope="module")
def filtered(messy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("work")
    meta = extract_metadata(messy, work / "metadata.parquet")
    filter_corrupt(meta, work / "kept.parquet", work / "rejected.parquet")
    return work


def test_every_bad_file_is_rejected_with_its_reason(filtered: Path) -> None:
    rejected = {r["fname"]: r for r in pq.read_table(filtered / "rejected.parquet").to_pylist()}
    for name in BAD:
        assert rejected[name]["reason"] == REASON_UNREADABLE, name
    assert "NaN" in rejected["nan.wav"]["detail"]
    assert rejected["missing.wav"]["reason"] == REASON_MISSING
    assert rejected["no_csv_names_me.wav"]["reason"] == REASON_UNLISTED
    assert rejected["unlabelled.wav"]["reason"] == REASON_NO_LABELS
    assert rejected["dup.wav"]["reason"] == REASON_DUPLICATE


def test_every_odd_but_valid_file_is_kept_and_described(filtered: Path) -> None:
    kept = {r["fname"]: r for r in pq.read_table(filtered / "kept.parquet").to_pylist()}
    assert set(GOOD) | {"dup.wav"} == set(kept)
    assert kept["six channels.wav"]["channels"] == 6
    assert kept["8k.wav"]["sample_rate"] == 8000
    assert kept["pcm24.wav"]["sample_format"] == "PCM_24"
    assert kept["ten_minutes.wav"]["duration"] == pytest.approx(600)
    assert kept["dup.wav"]["labels"] == ["Bark"]  # the first row wins


def test_features_of_every_kept_file_are_finite(messy: Path, filtered: Path) -> None:
    rows = pq.read_table(filtered / "kept.parquet").to_pylist()
    mel = load_config("demo").mel
    store = FeatureStore.open(build_feature_store(rows, messy, mel, filtered / "store"))
    assert np.isfinite(store.data).all()
    _, frames = store.locate(
        [
            ("curated", "8k.wav"),
            ("curated", "48k.wav"),
            ("curated", "one_ms.wav"),
            ("curated", "ten_minutes.wav"),
        ]
    )
    # Resampled to 44.1 kHz: the same half-second tone gives the same frame count.
    assert frames[0] == frames[1]
    assert frames[2] >= 1 and frames[3] > 600 * SR // mel.hop_length - 2


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_only_ever_raise_the_documented_error(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("rb") / "x.wav"
    path.write_bytes(data)
    try:
        read_audio(path)
    except AudioReadError as err:
        assert str(path) in str(err)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    channels=st.integers(0, 70000),
    rate=st.integers(0, 2**32 - 1),
    bits=st.sampled_from([0, 1, 8, 12, 16, 24, 32, 64, 65535]),
    fmt=st.sampled_from([0, 1, 3, 6, 7, 0xFFFE, 0xFFFF]),
    declared=st.integers(0, 2**32 - 1),
    payload=st.binary(max_size=512),
)
def test_odd_wav_headers_never_escape_the_reader(
    tmp_path_factory, channels: int, rate: int, bits: int, fmt: int, declared: int, payload: bytes
) -> None:
    block = max(1, channels * bits // 8) & 0xFFFF
    fmt_chunk = struct.pack(
        "<HHIIHH", fmt, channels & 0xFFFF, rate, (rate * block) & 0xFFFFFFFF, block, bits
    )
    body = b"fmt " + struct.pack("<I", 16) + fmt_chunk + b"data" + struct.pack("<I", declared)
    body += payload
    root = tmp_path_factory.mktemp("hdr")
    (root / "train_curated").mkdir()
    (root / "train_curated" / "odd.wav").write_bytes(
        b"RIFF" + struct.pack("<I", (4 + len(body)) & 0xFFFFFFFF) + b"WAVE" + body
    )
    try:
        samples, _ = read_audio(root / "train_curated" / "odd.wav")
        assert np.isfinite(samples).all()
    except AudioReadError:
        pass
    row = describe_file(root, "odd.wav", "curated", ["Bark"])  # never raises
    assert row["fname"] == "odd.wav"


def test_tagging_odd_files_gives_error_rows_not_crashes(messy: Path, tmp_path: Path) -> None:
    from audiotag.inference.predict import save_model
    from audiotag.inference.tagging import tag_files
    from audiotag.training.batches import Normalizer
    from audiotag.training.models import build_model

    config = load_config("demo", {"model.widen": 0.25})
    model_path = tmp_path / "m.pt"
    save_model(
        model_path,
        build_model(config.model, 2),
        ("Bark", "Run"),
        config,
        Normalizer(-60.0, 20.0, 60.0),
        None,
        "curated",
        0,
    )
    files = [
        messy / "train_curated" / n
        for n in ["empty.wav", "pcm8.wav", "nan.wav", "six channels.wav", "random.wav"]
    ]
    rows = list(tag_files(Ensemble(model_path), files, top_k=2))
    assert [r.error is None for r in rows] == [False, True, False, True, False]
    assert all(len(r.tags) == 2 for r in rows if r.error is None)


def test_an_unknown_label_is_ignored_for_training_and_the_file_kept(tmp_path: Path) -> None:
    from audiotag.steps.dataset import targets

    root = tmp_path / "d"
    (root / "train_noisy").mkdir(parents=True)
    (root / "train_curated").mkdir()
    sf.write(root / "train_noisy" / "n.wav", _tone(0.5), SR)
    (root / "train_curated.csv").write_text("fname,labels\n")
    (root / "train_noisy.csv").write_text('fname,labels\nn.wav,"Bark,Not_a_label"\n')
    (root / "sample_submission.csv").write_text("fname,Bark,Run\n")
    meta = extract_metadata(root, tmp_path / "m.parquet")
    kept, rejected = filter_corrupt(meta, tmp_path / "k.parquet", tmp_path / "r.parquet")
    assert (kept, rejected) == (1, 0)
    rows = pq.read_table(tmp_path / "k.parquet").to_pylist()
    assert targets(rows, ("Bark", "Run")).tolist() == [[True, False]]
