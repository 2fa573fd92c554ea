from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from audiotag.config import MelSettings, load_config, settings_hash
from audiotag.data.filtering import filter_corrupt
from audiotag.data.metadata import dataset_fingerprint, describe_file, extract_metadata
from audiotag.data.schemas import METADATA_SCHEMA
from audiotag.features.store import FeatureStore, build_feature_store
from tests.helpers.audio import write_bursts, write_tone


def test_metadata_of_real_recordings(drum_dataset: Path, tmp_path: Path) -> None:
    out = extract_metadata(drum_dataset, tmp_path / "metadata.parquet", 20.0)
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
    assert kick["silence_top_db"] == 20.0
    assert rows["empty.wav"]["error"] and rows["trunc.wav"]["error"]
    assert rows["missing.wav"]["error"].startswith("missing")


def test_metadata_is_incremental(drum_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "metadata.parquet"
    extract_metadata(drum_dataset, out, 20.0)
    first = pq.read_table(out).to_pylist()
    # A changed file is re-read; the others keep their rows (same sha1, no re-read needed).
    write_tone(drum_dataset / "train_curated" / "bass_drum_00.wav", freq=100.0, seconds=0.3)
    extract_metadata(drum_dataset, out, 20.0)
    second = {r["fname"]: r for r in pq.read_table(out).to_pylist()}
    changed = second["bass_drum_00.wav"]
    assert changed["sha1"] != first[0]["sha1"] and changed["duration"] == pytest.approx(0.3)
    assert second["snare_drum_00.wav"] == next(
        r for r in first if r["fname"] == "snare_drum_00.wav"
    )


def test_a_row_is_reused_only_at_the_same_silence_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _two_tone_dataset(tmp_path / "data")
    out = tmp_path / "metadata.parquet"
    extract_metadata(data, out, 20.0)
    reads: list[str] = []

    def counting(data_dir: Path, fname: str, *args: object) -> dict:
        reads.append(fname)
        return describe_file(data_dir, fname, *args)

    monkeypatch.setattr("audiotag.data.metadata.describe_file", counting)
    extract_metadata(data, out, 20.0)
    assert reads == []
    extract_metadata(data, out, 40.0)
    assert sorted(reads) == ["quiet_tail.wav", "tone.wav"]
    assert {r["silence_top_db"] for r in pq.read_table(out).to_pylist()} == {40.0}


def test_a_row_without_its_threshold_is_read_again(tmp_path: Path) -> None:
    # metadata.parquet written before the threshold was recorded.
    data = _two_tone_dataset(tmp_path / "data")
    out = extract_metadata(data, tmp_path / "metadata.parquet", 20.0)
    old = pq.read_table(out).drop_columns(["silence_top_db"])
    pq.write_table(old, out)
    rows = pq.read_table(extract_metadata(data, out, 20.0)).to_pylist()
    assert [r["silence_top_db"] for r in rows] == [20.0, 20.0]


def _two_tone_dataset(root: Path) -> Path:
    """Two curated clips: a loud tone then a tone 30 dB quieter, and a plain tone."""
    sr = 44100
    t = np.arange(sr) / sr
    loud = 0.5 * np.sin(2 * np.pi * 440 * t)
    quiet = 0.5 * 10 ** (-30 / 20) * np.sin(2 * np.pi * 660 * t)
    cur = root / "train_curated"
    cur.mkdir(parents=True)
    sf.write(cur / "quiet_tail.wav", np.concatenate([loud, quiet]).astype(np.float32), sr)
    write_tone(cur / "tone.wav", seconds=0.5)
    (root / "train_curated.csv").write_text("fname,labels\nquiet_tail.wav,Bark\ntone.wav,Run\n")
    return root


def _data_steps(data: Path, work: Path, mel: MelSettings) -> FeatureStore:
    """extract_metadata -> filter_corrupt -> the feature store, keyed by the mel settings
    (as the flow keys it), in ``work``."""
    meta = extract_metadata(data, work / "metadata.parquet", mel.silence_top_db)
    filter_corrupt(meta, work / "kept.parquet", work / "rejected.parquet")
    rows = pq.read_table(work / "kept.parquet").to_pylist()
    root = build_feature_store(rows, data, mel, work / "features" / settings_hash(mel))
    return FeatureStore.open(root)


def test_features_follow_the_silence_threshold(tmp_path: Path) -> None:
    data = _two_tone_dataset(tmp_path / "data")
    strict = load_config("debug", {"mel.silence_top_db": 20.0}).mel
    loose = load_config("debug", {"mel.silence_top_db": 40.0}).mel
    work = tmp_path / "work"

    first = _data_steps(data, work, strict)
    second = _data_steps(data, work, loose)  # the same work dir, the threshold changed
    fresh = _data_steps(data, tmp_path / "fresh", loose)

    key = ("curated", "quiet_tail.wav")
    # At 20 dB the quieter second (30 dB down) is silence; at 40 dB it is kept.
    strict_frames, loose_frames = first.index[key][1], second.index[key][1]
    assert loose_frames > 1.8 * strict_frames
    assert second.index == fresh.index
    np.testing.assert_array_equal(np.asarray(second.data), np.asarray(fresh.data))
    # A tone without quiet parts loses nothing more at either threshold.
    assert first.index[("curated", "tone.wav")][1] == second.index[("curated", "tone.wav")][1]


def test_store_refuses_intervals_found_at_another_threshold(tmp_path: Path) -> None:
    data = _two_tone_dataset(tmp_path / "data")
    meta = extract_metadata(data, tmp_path / "metadata.parquet", 20.0)
    filter_corrupt(meta, tmp_path / "kept.parquet", tmp_path / "rejected.parquet")
    rows = pq.read_table(tmp_path / "kept.parquet").to_pylist()
    mel = load_config("debug", {"mel.silence_top_db": 40.0}).mel
    with pytest.raises(ValueError, match="silence_top_db 20.0.*say 40.0"):
        build_feature_store(rows, data, mel, tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_fingerprint_follows_content_and_labels(drum_dataset: Path, tmp_path: Path) -> None:
    def fingerprint() -> str:
        meta = extract_metadata(drum_dataset, tmp_path / "m.parquet", 20.0)
        filter_corrupt(meta, tmp_path / "k.parquet", tmp_path / "r.parquet")
        return dataset_fingerprint(tmp_path / "k.parquet")

    fp = fingerprint()
    # Same content, new mtime: same fingerprint.
    (drum_dataset / "train_curated" / "cymbal_00.wav").touch()
    assert fingerprint() == fp
    csv = drum_dataset / "train_curated.csv"
    csv.write_text(csv.read_text().replace("cymbal_00.wav,Cymbal", "cymbal_00.wav,Hi-hat"))
    assert fingerprint() != fp


def test_a_file_read_in_blocks_gets_the_row_of_the_file_read_whole(tmp_path: Path) -> None:
    """Blocks of 3000 frames (a stereo clip of 30 of them, silences across their edges)
    give the row of one block: the same sha1, length, peak, RMS and silence intervals."""
    import hashlib

    from audiotag.features.audio import read_audio

    path = write_bursts(tmp_path / "train_curated" / "long.wav", seconds=90000 / 44100)
    whole = describe_file(tmp_path, "long.wav", "curated", ["Bark"], 20.0, block_frames=1 << 20)
    blocked = describe_file(tmp_path, "long.wav", "curated", ["Bark"], 20.0, block_frames=3000)
    assert blocked == whole and whole["error"] is None and len(whole["nonsilent"]) > 3
    assert whole["sha1"] == hashlib.sha1(path.read_bytes()).hexdigest()
    samples, _ = read_audio(path)  # the rule on the samples held whole, as before blocks
    assert whole["frames"] == len(samples) == 90000 and whole["channels"] == 2
    assert whole["peak_db"] == pytest.approx(20 * np.log10(np.abs(samples).max()))
    rms = np.sqrt(np.mean(samples.astype(np.float64) ** 2))
    assert whole["rms_db"] == pytest.approx(20 * np.log10(rms), abs=1e-9)
