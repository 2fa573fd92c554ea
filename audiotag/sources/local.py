"""Getting the raw dataset into the SPEC §4 layout, whichever source it comes from.

``source`` is a path (a directory already in the layout, or the competition zip),
``demo`` (the embedded synthetic dataset: :mod:`audiotag.sources.demo`) or
``kaggle`` (the competition archive, downloaded through the ``kaggle`` client:
:mod:`audiotag.sources.kaggle`). Archives are unpacked by
:mod:`audiotag.sources.archive`.

The folders come from the caller (the work dir's ``Workspace``); nothing here
derives one path from another.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from audiotag.data.layout import COMPETITION, LayoutError, check_layout
from audiotag.sources.archive import unpack_competition
from audiotag.sources.demo import write_demo_dataset
from audiotag.sources.kaggle import download_competition


def prepare_source(
    source: str, data_dir: Path, *, demo_dir: Path, kaggle_dir: Path, seed: int = 0
) -> Path:
    """Returns a directory in the FAT2019 layout for ``source``.

    Args:
        source: ``demo``; ``kaggle``; a directory in the layout (used in place);
            or a zip.
        data_dir: Where archives are unpacked.
        demo_dir: Where the demo archive is written (``demo`` only).
        kaggle_dir: Where the competition archive is downloaded and kept for
            resuming (``kaggle`` only).
        seed: The demo dataset's seed.

    Raises:
        LayoutError: If ``source`` is none of these, or not in the layout.
    """
    if source == "demo":
        archive = demo_dir / f"{COMPETITION}-seed{seed}.zip"
        if not archive.exists():
            built = write_demo_dataset(archive.parent, seed=seed)
            os.replace(built, archive)
        return unpack_competition(archive, data_dir)
    if source == "kaggle":
        return download_competition(data_dir, kaggle_dir, COMPETITION)
    path = Path(source).expanduser()
    if path.is_dir():
        check_layout(path)
        return path
    if path.is_file() and zipfile.is_zipfile(path):
        return unpack_competition(path, data_dir)
    if not path.exists():
        raise LayoutError(
            f"{source}: no such file or directory (expected 'demo', 'kaggle', a "
            "dataset directory or the competition zip)"
        )
    raise LayoutError(f"{source}: neither a directory nor a zip archive")
