"""Tests for the synthetic FAT2019-shaped demo dataset."""

import io
import math
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from audiotag.sources.demo import (
    COMPETITION,
    DEMO_CLASSES,
    KAGGLE_CORRUPT_CURATED,
    SAMPLE_RATE,
    write_demo_dataset,
)

SCALE = 0.2
N_BROKEN = 3 + len(KAGGLE_CORRUPT_CURATED)
MEMBERS = {
    "train_curated.csv",
    "train_noisy.csv",
    "sample_submission.csv",
    "test_labels.csv",
    "train_curated.zip",
    "train_noisy.zip",
    "test.zip",
}
SPLITS = {
    "train_curated.csv": "train_curated.zip",
    "train_noisy.csv": "train_noisy.zip",
    "test_labels.csv": "test.zip",
}
FNAME = re.compile(r"^[0-9a-f]{8}\.wav$")


@pytest.fixture(scope="module")
def demo_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("demo"), seed=0, scale=SCALE)


@pytest.fixture(scope="module")
def archive(demo_zip: Path) -> dict[str, bytes]:
    """Every member of the competition zip, read into memory once."""
    with zipfile.ZipFile(demo_zip) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def inner_files(archive: dict[str, bytes], zip_name: str) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(archive[zip_name])) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def read_csv(archive: dict[str, bytes], csv_name: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(archive[csv_name]))


def test_returns_competition_zip_path(demo_zip: Path) -> None:
    assert demo_zip.name == f"{COMPETITION}.zip"
    assert demo_zip.is_file()
    # No temporary file may be left beside the result.
    assert [p.name for p in demo_zip.parent.iterdir()] == [demo_zip.name]


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    first = write_demo_dataset(tmp_path / "a", seed=7, scale=0.05).read_bytes()
    second = write_demo_dataset(tmp_path / "b", seed=7, scale=0.05).read_bytes()
    other = write_demo_dataset(tmp_path / "c", seed=8, scale=0.05).read_bytes()
    assert first == second
    assert first != other


def test_stored_wavs_are_the_same_files_as_deflated(tmp_path: Path, archive: dict) -> None:
    """deflate=False (the memory benchmark's large datasets) stores the WAVs uncompressed."""
    stored = write_demo_dataset(tmp_path, seed=0, scale=SCALE, deflate=False)
    with zipfile.ZipFile(stored) as zf:
        other = {name: zf.read(name) for name in zf.namelist()}
    assert other.keys() == archive.keys()
    for name in SPLITS.values():
        with zipfile.ZipFile(io.BytesIO(other[name])) as zf:
            assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
        assert inner_files(other, name) == inner_files(archive, name)
    for name in SPLITS:
        assert other[name] == archive[name]


def test_zip_holds_exactly_the_kaggle_members(archive: dict[str, bytes]) -> None:
    assert set(archive) == MEMBERS


@pytest.mark.parametrize(("csv_name", "zip_name"), sorted(SPLITS.items()))
def test_csv_lists_exactly_the_inner_zip_files(
    archive: dict[str, bytes], csv_name: str, zip_name: str
) -> None:
    df = read_csv(archive, csv_name)
    names = inner_files(archive, zip_name)
    assert list(df.columns) == ["fname", "labels"]
    assert df["fname"].is_unique
    # WAVs sit at the zip root, as in Kaggle's inner zips.
    assert set(df["fname"]) == set(names)
    assert all("/" not in name for name in names)


def test_split_sizes_follow_scale(archive: dict[str, bytes]) -> None:
    assert len(read_csv(archive, "train_curated.csv")) == round(250 * SCALE) + N_BROKEN
    assert len(read_csv(archive, "train_noisy.csv")) == round(500 * SCALE)
    assert len(read_csv(archive, "test_labels.csv")) == round(150 * SCALE)


def test_file_names_are_unique_hex_across_splits(archive: dict[str, bytes]) -> None:
    all_names = [n for csv_name in SPLITS for n in read_csv(archive, csv_name)["fname"]]
    assert len(all_names) == len(set(all_names))
    assert all(FNAME.match(name) for name in all_names)


@pytest.mark.parametrize("csv_name", sorted(SPLITS))
def test_labels_are_one_to_three_known_classes(archive: dict[str, bytes], csv_name: str) -> None:
    label_lists = read_csv(archive, csv_name)["labels"].str.split(",")
    assert label_lists.map(len).between(1, 3).all()
    assert label_lists.map(lambda labels: len(set(labels)) == len(labels)).all()
    seen = {label for labels in label_lists for label in labels}
    assert seen <= set(DEMO_CLASSES)
    # Round-robin primaries put every class in every split, even at small scale.
    assert seen == set(DEMO_CLASSES)
    # Multi-label clips are part of the format the pipeline must handle.
    assert (label_lists.map(len) > 1).any()


def test_demo_classes_are_ten_sorted_kaggle_style_names() -> None:
    assert len(DEMO_CLASSES) == len(set(DEMO_CLASSES)) == 10
    assert list(DEMO_CLASSES) == sorted(DEMO_CLASSES)
    assert all(re.fullmatch(r"[A-Z][A-Za-z_()\-]+", c) for c in DEMO_CLASSES)


def test_sample_submission_matches_test_set(archive: dict[str, bytes]) -> None:
    sub = read_csv(archive, "sample_submission.csv")
    assert list(sub.columns) == ["fname", *sorted(DEMO_CLASSES)]
    assert (sub.drop(columns="fname") == 0).all().all()
    assert list(sub["fname"]) == sorted(read_csv(archive, "test_labels.csv")["fname"])


@pytest.mark.parametrize("zip_name", sorted(SPLITS.values()))
def test_wavs_are_44k_mono_pcm16(archive: dict[str, bytes], zip_name: str) -> None:
    for name, data in inner_files(archive, zip_name).items():
        if len(data) <= 44:
            continue  # the empty and the truncated curated file
        info = sf.info(io.BytesIO(data))
        assert info.samplerate == SAMPLE_RATE, name
        assert info.channels == 1, name
        assert info.subtype == "PCM_16", name
        assert info.format == "WAV", name


@pytest.mark.parametrize(
    ("zip_name", "lo_s", "hi_s"),
    [("train_curated.zip", 0.5, 4.0), ("train_noisy.zip", 2.0, 6.0), ("test.zip", 0.5, 5.0)],
)
def test_clip_durations_and_levels(
    archive: dict[str, bytes], zip_name: str, lo_s: float, hi_s: float
) -> None:
    csv_name = next(c for c, z in SPLITS.items() if z == zip_name)
    labels = read_csv(archive, csv_name).set_index("fname")["labels"]
    for name, data in inner_files(archive, zip_name).items():
        if len(data) <= 44 or name in KAGGLE_CORRUPT_CURATED:
            continue  # broken on purpose; checked on their own below
        audio, _ = sf.read(io.BytesIO(data), dtype="float32")
        peak = float(np.abs(audio).max())
        if peak == 0.0:
            continue  # the all-silent broken file
        assert lo_s - 0.01 <= len(audio) / SAMPLE_RATE <= hi_s + 0.01, name
        # Events are placed at -30..-6 dBFS peak; mixes never clip.
        assert 10 ** (-32 / 20) < peak < 1.0, (name, labels[name])


def test_curated_holds_the_broken_and_known_corrupt_files(archive: dict[str, bytes]) -> None:
    files = inner_files(archive, "train_curated.zip")
    listed = set(read_csv(archive, "train_curated.csv")["fname"])

    empty = [n for n, data in files.items() if len(data) == 0]
    assert len(empty) == 1

    unreadable = []
    silent = []
    for name, data in files.items():
        if not data:
            continue
        try:
            audio, sr = sf.read(io.BytesIO(data))
        except sf.LibsndfileError:
            unreadable.append(name)
            continue
        if not np.any(audio):
            silent.append((name, len(audio) / sr))
    assert len(unreadable) == 1
    assert len(files[unreadable[0]]) == 20
    assert len(silent) == 1
    assert silent[0][1] == pytest.approx(1.0)

    # Kaggle's known-corrupt names are present, listed and decodable, so only
    # dropping them by name removes them.
    for name in KAGGLE_CORRUPT_CURATED:
        assert name in files and name in listed
        assert sf.info(io.BytesIO(files[name])).frames > 0
    assert {*empty, *unreadable, silent[0][0]} <= listed


@pytest.mark.parametrize("scale", [0.0, -1.0, math.nan])
def test_rejects_non_positive_scale(tmp_path: Path, scale: float) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(scale))):
        write_demo_dataset(tmp_path, scale=scale)
    assert not any(tmp_path.iterdir())
