"""``prepare_source``: each kind of source ends as a directory in the FAT2019 layout."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from audiotag.data.layout import COMPETITION, LayoutError
from audiotag.sources import local
from audiotag.sources.archive import MARKER
from audiotag.sources.local import prepare_source


def _competition_zip(path: Path) -> Path:
    """A minimal competition zip: the curated CSV and a nested zip with one WAV."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("0a1b2c3d.wav", b"RIFF")
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("train_curated.csv", "fname,labels\n0a1b2c3d.wav,Bark\n")
        zf.writestr("train_curated.zip", inner.getvalue())
    return path


def _prepare(source: str, tmp_path: Path, seed: int = 0) -> Path:
    return prepare_source(
        source,
        tmp_path / "data",
        demo_dir=tmp_path / "demo-src",
        kaggle_dir=tmp_path / "kaggle-src",
        seed=seed,
    )


def test_a_directory_in_the_layout_is_used_in_place(tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    (root / "train_curated").mkdir(parents=True)
    (root / "train_curated.csv").write_text("fname,labels\n")
    assert _prepare(str(root), tmp_path) == root
    assert not (tmp_path / "data").exists()


def test_a_directory_outside_the_layout_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "dataset").mkdir()
    with pytest.raises(LayoutError, match="train_curated"):
        _prepare(str(tmp_path / "dataset"), tmp_path)


def test_a_zip_is_unpacked_with_its_nested_zips(tmp_path: Path) -> None:
    archive = _competition_zip(tmp_path / "in" / "fat.zip")
    data_dir = _prepare(str(archive), tmp_path)
    assert data_dir == tmp_path / "data"
    assert (data_dir / "train_curated" / "0a1b2c3d.wav").read_bytes() == b"RIFF"
    assert not (data_dir / "train_curated.zip").exists()
    assert (data_dir / MARKER).exists()


@pytest.mark.parametrize("source", ["nonsense", "demo.zip", "~/no/such/dir"])
def test_an_unknown_source_is_named_in_the_error(tmp_path: Path, source: str) -> None:
    with pytest.raises(LayoutError, match="no such file or directory") as err:
        _prepare(source, tmp_path)
    assert source in str(err.value)


def test_a_file_that_is_not_a_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not an archive")
    with pytest.raises(LayoutError, match="neither a directory nor a zip"):
        _prepare(str(path), tmp_path)


def test_demo_is_written_once_into_the_demo_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = []

    def fake_demo(out_dir: Path, seed: int) -> Path:
        written.append((out_dir, seed))
        return _competition_zip(out_dir / f"{COMPETITION}.zip")

    monkeypatch.setattr(local, "write_demo_dataset", fake_demo)
    data_dir = _prepare("demo", tmp_path, seed=4)
    assert data_dir == tmp_path / "data"
    assert (tmp_path / "demo-src" / f"{COMPETITION}-seed4.zip").is_file()
    assert _prepare("demo", tmp_path, seed=4) == data_dir
    assert written == [(tmp_path / "demo-src", 4)]


def test_kaggle_downloads_into_the_kaggle_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def fake_download(data_dir: Path, archive_dir: Path, competition: str) -> Path:
        calls.append((data_dir, archive_dir, competition))
        return data_dir

    monkeypatch.setattr(local, "download_competition", fake_download)
    assert _prepare("kaggle", tmp_path) == tmp_path / "data"
    assert calls == [(tmp_path / "data", tmp_path / "kaggle-src", COMPETITION)]
