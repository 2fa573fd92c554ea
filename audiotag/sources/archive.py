"""The competition zip: unpacking it, nested zips included, safely and only once.

Both the local sources (a zip given by path, the demo archive) and the Kaggle
download end here: :func:`unpack_competition` writes the SPEC §4 layout and a
marker that records which archive it came from.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from audiotag.data.layout import AUDIO_DIRS, LayoutError, check_layout

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
            try:
                with zf.open(info) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                os.replace(tmp, dest)
            finally:  # a failed write (a full disk) leaves no partial file behind
                tmp.unlink(missing_ok=True)
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
