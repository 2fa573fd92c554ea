"""Nothing half-written is trusted, nothing crafted is run, nothing escapes its folder."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from audiotag.inference.predict import LoadedModel
from audiotag.sources.archive import UnsafeArchiveError, extract_zip
from audiotag.storage import atomic_path, write_atomic


class _Payload:
    def __reduce__(self):  # what a crafted pickle runs on load
        return (Path.touch, (Path(_Payload.marker),))


def test_a_crafted_model_file_cannot_run_code(tmp_path: Path) -> None:
    _Payload.marker = str(tmp_path / "pwned")
    evil = tmp_path / "evil.pt"
    torch.save({"format": 1, "state_dict": _Payload()}, evil, pickle_protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        LoadedModel(evil)
    assert not (tmp_path / "pwned").exists()


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


def test_a_crash_mid_write_leaves_the_previous_file_and_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "metadata.parquet"
    target.write_text("previous, complete")

    def crash(tmp: Path) -> None:
        tmp.write_text("half of the new")
        raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, crash)
    assert target.read_text() == "previous, complete"
    assert [p.name for p in tmp_path.iterdir()] == ["metadata.parquet"]


def test_atomic_write_replaces_whole(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
