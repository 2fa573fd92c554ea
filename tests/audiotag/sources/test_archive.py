"""audiotag/sources/archive.py: members never escape their folder, and one archive is
unpacked once."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from audiotag.sources.archive import UnsafeArchiveError, extract_zip, unpack_competition


@pytest.mark.parametrize(
    "name",
    ["../escape.txt", "/abs/escape.txt", "a/../../escape.txt", "C:/escape.txt", "..\\escape.txt"],
)
def test_archive_members_escaping_their_folder_are_refused(tmp_path: Path, name: str) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr(name, "escaped")
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="outside"):
        extract_zip(archive, target)
    assert not (tmp_path / "escape.txt").exists()
    assert not (target / "ok.txt").exists()  # checked before anything is written


def _competition_zip(path: Path, wav: bytes) -> Path:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("0a1b2c3d.wav", wav)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("train_curated.csv", "fname,labels\n0a1b2c3d.wav,Bark\n")
        zf.writestr("train_curated.zip", inner.getvalue())
    return path


def test_the_same_archive_is_unpacked_once_and_another_one_again(tmp_path: Path) -> None:
    archive = _competition_zip(tmp_path / "fat.zip", b"RIFF first")
    data = tmp_path / "data"
    wav = unpack_competition(archive, data) / "train_curated" / "0a1b2c3d.wav"
    assert wav.read_bytes() == b"RIFF first"
    wav.write_bytes(b"touched since")
    unpack_competition(archive, data)  # the marker names this archive: nothing is redone
    assert wav.read_bytes() == b"touched since"
    _competition_zip(archive, b"RIFF second, a new download")
    os.utime(archive, ns=(1, 1))
    unpack_competition(archive, data)
    assert wav.read_bytes() == b"RIFF second, a new download"
