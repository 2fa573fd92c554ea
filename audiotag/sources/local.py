"""Getting the raw dataset into the SPEC §4 layout: from a directory or an archive.

``source`` is a path (a directory already in the layout, or the competition zip),
``demo`` (the embedded synthetic dataset) or ``kaggle`` (the competition archive,
downloaded through the ``kaggle`` client: :mod:`audiotag.sources.kaggle`).
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from audiotag.data.layout import AUDIO_DIRS, COMPETITION, LayoutError, check_layout

MARKER = ".audiotag-extracted.json"


class UnsafeArchiveError(ValueError):
    """An archive member would land outside its target directory (zip slip)."""


def _archive_id(path: Path) -> dict:
    st = path.stat()
    return {"archive": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def safe_member_path(root: Path, name: str) -> Path:
    """Where member ``name`` goes under ``root``; refuses absolute or escaping paths."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise UnsafeArchiveError(f"archive member {name!r} would land outside {root}")
    return root.joinpath(*pure.parts)


def extract_zip(archive: Path, target: Path) -> list[Path]:
    """Extracts every member under ``target`` (atomically per file); returns the files."""
    out = []
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as err:
        raise LayoutError(f"{archive}: not a readable zip archive ({err})") from None
    with zf:
        members = zf.infolist()
        for info in members:  # check all before writing any
            safe_member_path(target, info.filename)
        for info in members:
            dest = safe_member_path(target, info.filename)
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.part")
            with zf.open(info) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(tmp, dest)
            out.append(dest)
    return out


def unpack_competition(archive: Path, data_dir: Path) -> Path:
    """Unpacks the competition zip and its nested ``train_curated.zip`` etc. into the layout.

    Idempotent: a marker records which archive was unpacked; the same archive
    (path, size, mtime) is not unpacked again.
    """
    marker = data_dir / MARKER
    ident = _archive_id(archive)
    if marker.exists() and json.loads(marker.read_text()) == ident:
        return data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    for path in extract_zip(archive, data_dir):
        stem = path.stem
        if path.suffix == ".zip" and stem in AUDIO_DIRS.values():
            extract_zip(path, data_dir / stem)
            path.unlink()
    check_layout(data_dir)
    marker.write_text(json.dumps(ident))
    return data_dir


def prepare_source(source: str, data_dir: Path, seed: int = 0) -> Path:
    """Returns a directory in the FAT2019 layout for ``source``.

    Args:
        source: ``demo``; ``kaggle`` (downloaded into ``<data_dir>/../kaggle-source``);
            a directory in the layout (used in place); or a zip.
        data_dir: where archives are unpacked (and the demo written).
        seed: the demo dataset's seed.
    """
    if source == "demo":
        from audiotag.sources.demo import write_demo_dataset

        archive = data_dir.parent / "demo-source" / f"{COMPETITION}-seed{seed}.zip"
        if not archive.exists():
            built = write_demo_dataset(archive.parent, seed=seed)
            os.replace(built, archive)
        return unpack_competition(archive, data_dir)
    if source == "kaggle":
        from audiotag.sources.kaggle import download_competition

        return download_competition(data_dir, COMPETITION)
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
