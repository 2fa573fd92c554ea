"""Fixtures of the data tests: the real drum recordings laid out as a FAT2019 dataset."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from audiotag.data.layout import KAGGLE_CORRUPT_FILES
from tests.helpers.audio import write_tone


@pytest.fixture
def drum_dataset(drums_dir: Path, tmp_path: Path) -> Path:
    """The 48 drum recordings as curated files, plus five broken entries.

    An empty file, a truncated header, an all-silent clip, a file on Kaggle's
    corrupt list and a CSV row without a file.
    """
    root = tmp_path / "data"
    cur = root / "train_curated"
    cur.mkdir(parents=True)
    lines = ["fname,labels"]
    for line in (drums_dir / "labels.csv").read_text().splitlines()[1:]:
        fname, label = line.split(",")[:2]
        shutil.copy(drums_dir / fname, cur / fname)
        lines.append(f"{fname},{label}")
    (cur / "empty.wav").write_bytes(b"")
    (cur / "trunc.wav").write_bytes((drums_dir / "clapping_00.wav").read_bytes()[:20])
    write_tone(cur / "silent.wav", amp=0.0)
    corrupt = sorted(KAGGLE_CORRUPT_FILES)[0]
    shutil.copy(drums_dir / "clapping_01.wav", cur / corrupt)
    lines += [
        "empty.wav,Clapping",
        "trunc.wav,Clapping",
        "silent.wav,Clapping",
        f"{corrupt},Clapping",
        "missing.wav,Clapping",
    ]
    (root / "train_curated.csv").write_text("\n".join(lines) + "\n")
    return root
