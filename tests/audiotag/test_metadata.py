import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from audiotag.data.layout import KAGGLE_CORRUPT_FILES, read_vocabulary
from audiotag.data.metadata import (
    METADATA_SCHEMA,
    REASON_KAGGLE,
    REASON_MISSING,
    REASON_SILENT,
    REASON_UNREADABLE,
    dataset_fingerprint,
    extract_metadata,
    filter_corrupt,
)
from tests.conftest import write_tone


def make_drum_dataset(drums: Path, root: Path) -> Path:
    """The drum recordings laid out as a FAT2019 dataset, plus broken entries."""
    cur = root / "train_curated"
    cur.mkdir(parents=True)
    lines = ["fname,labels"]
    for line in (drums / "labels.csv").read_text().splitlines()[1:]:
        fname, label = line.split(",")[:2]
        shutil.copy(drums / fname, cur / fname)
        lines.append(f"{fname},{label}")
    (cur / "empty.wav").write_bytes(b"")
    (cur / "trunc.wav").write_bytes((drums / "clapping_00.wav").read_bytes()[:20])
    write_tone(cur / "silent.wav", amp=0.0)
    corrupt = sorted(KAGGLE_CORRUPT_FILES)[0]
    shutil.copy(drums / "clapping_01.wav", cur / corrupt)
    lines += [
        "empty.wav,Clapping",
        "trunc.wav,Clapping",
        "silent.wav,Clapping",
        f"{corrupt},Clapping",
        "missing.wav,Clapping",
    ]
    (root / "train_curated.csv").write_text("\n".join(lines) + "\n")
    return root


def test_metadata_of_real_recordings(drums_dir: Path, tmp_path: Path) -> None:
    data = make_drum_dataset(drums_dir, tmp_path / "data")
    out = extract_metadata(data, tmp_path / "metadata.parquet")
    table = pq.read_table(out)
    assert table.schema.equals(METADATA_SCHEMA)
    rows = {r["fname"]: r for r in table.to_pylist()}
    assert len(rows) == 48 + 5
    kick = rows["bass_drum_00.wav"]
    assert kick["sample_rate"] == 44100 and kick["channels"] == 1
    assert kick["sample_format"] == "PCM_16" and kick["labels"] == ["Bass_drum"]
    assert 0 < kick["duration"] <= 1.5 and kick["error"] is None
    assert -60 < kick["peak_db"] <= 0 and kick["rms_db"] < kick["peak_db"]
    assert kick["nonsilent"] and 0 < kick["nonsilent_duration"] <= kick["duration"]
    assert rows["empty.wav"]["error"] and rows["trunc.wav"]["error"]
    assert rows["missing.wav"]["error"].startswith("missing")
    assert read_vocabulary(data) == (
        "Bass_drum",
        "Clapping",
        "Cymbal",
        "Hi-hat",
        "Snare_drum",
        "Tom-tom",
    )


def test_filter_records_every_rejection_with_reason(drums_dir: Path, tmp_path: Path) -> None:
    data = make_drum_dataset(drums_dir, tmp_path / "data")
    meta = extract_metadata(data, tmp_path / "metadata.parquet")
    kept, rejected = filter_corrupt(meta, tmp_path / "kept.parquet", tmp_path / "rejected.parquet")
    assert (kept, rejected) == (48, 5)
    reasons = {
        r["fname"]: r["reason"] for r in pq.read_table(tmp_path / "rejected.parquet").to_pylist()
    }
    assert reasons == {
        "empty.wav": REASON_UNREADABLE,
        "trunc.wav": REASON_UNREADABLE,
        "silent.wav": REASON_SILENT,
        sorted(KAGGLE_CORRUPT_FILES)[0]: REASON_KAGGLE,
        "missing.wav": REASON_MISSING,
    }
    # Nothing is deleted.
    assert (data / "train_curated" / "empty.wav").exists()


def test_metadata_is_incremental(drums_dir: Path, tmp_path: Path) -> None:
    data = make_drum_dataset(drums_dir, tmp_path / "data")
    out = tmp_path / "metadata.parquet"
    extract_metadata(data, out)
    first = pq.read_table(out).to_pylist()
    # A changed file is re-read; the others keep their rows (same sha1, no re-read needed).
    write_tone(data / "train_curated" / "bass_drum_00.wav", freq=100.0, seconds=0.3)
    extract_metadata(data, out)
    second = {r["fname"]: r for r in pq.read_table(out).to_pylist()}
    changed = second["bass_drum_00.wav"]
    assert changed["sha1"] != first[0]["sha1"] and changed["duration"] == pytest.approx(0.3)
    assert second["snare_drum_00.wav"] == next(
        r for r in first if r["fname"] == "snare_drum_00.wav"
    )


def test_fingerprint_follows_content_and_labels(drums_dir: Path, tmp_path: Path) -> None:
    data = make_drum_dataset(drums_dir, tmp_path / "data")
    meta = extract_metadata(data, tmp_path / "m.parquet")
    filter_corrupt(meta, tmp_path / "k.parquet", tmp_path / "r.parquet")
    fp = dataset_fingerprint(tmp_path / "k.parquet")
    # Same content, new mtime: same fingerprint.
    (data / "train_curated" / "cymbal_00.wav").touch()
    meta = extract_metadata(data, tmp_path / "m.parquet")
    filter_corrupt(meta, tmp_path / "k.parquet", tmp_path / "r.parquet")
    assert dataset_fingerprint(tmp_path / "k.parquet") == fp
    csv = data / "train_curated.csv"
    csv.write_text(csv.read_text().replace("cymbal_00.wav,Cymbal", "cymbal_00.wav,Hi-hat"))
    meta = extract_metadata(data, tmp_path / "m.parquet")
    filter_corrupt(meta, tmp_path / "k.parquet", tmp_path / "r.parquet")
    assert dataset_fingerprint(tmp_path / "k.parquet") != fp
