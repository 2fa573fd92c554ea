"""What the served model accepts from a client, decided before any audio is decoded.

A row sends ``audio`` (the file's bytes, base64). A row may name a ``path`` on the
server only where the operator allowed folders when serving started
(``AUDIOTAG_SERVE_ALLOWED_DIRS``); then only a regular file whose real path (links
followed) lies inside one of them is read. Every refused path gets the same text,
whether it exists or not, so that answers tell nothing about the server's disk.
Rows per request, bytes per row and per request, and seconds per row are limited.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from audiotag.config import ServeSettings
from audiotag.features.audio import AudioReadError, open_regular_file

# The operator's settings, read when the model loads.
ENV_ALLOWED_DIRS = "AUDIOTAG_SERVE_ALLOWED_DIRS"
ENV_LIMITS: dict[str, str] = {
    "max_rows": "AUDIOTAG_SERVE_MAX_ROWS",
    "max_row_bytes": "AUDIOTAG_SERVE_MAX_ROW_BYTES",
    "max_request_bytes": "AUDIOTAG_SERVE_MAX_REQUEST_BYTES",
    "max_seconds": "AUDIOTAG_SERVE_MAX_SECONDS",
}
INPUT_COLUMNS = ("audio", "path")

PATHS_OFF = (
    "paths are not read on this server: send the file's bytes in 'audio' (base64); "
    f"the operator may allow folders with {ENV_ALLOWED_DIRS}"
)
PATH_REFUSED = "path refused: not a regular file inside a folder this server may read"
NO_INPUT = "row has neither 'audio' nor 'path'"


class RowError(ValueError):
    """An input row that is not tagged; the message is its answer's ``error``."""


def serve_settings_from_env(environ: Mapping[str, str] = os.environ) -> ServeSettings:
    """The served model's settings from ``AUDIOTAG_SERVE_*`` variables (unset: defaults).

    ``AUDIOTAG_SERVE_ALLOWED_DIRS`` lists folders separated by ``os.pathsep`` (``:``);
    each is kept as its real path.

    Raises:
        ValueError: a variable is not a number, a limit is not positive, or an allowed
            folder is not an absolute path to an existing directory. The model then
            fails to load, before it answers anyone.
    """
    values: dict = {}
    for field, var in ENV_LIMITS.items():
        text = environ.get(var, "").strip()
        if not text:
            continue
        try:
            values[field] = float(text) if field == "max_seconds" else int(text)
        except ValueError:
            raise ValueError(f"{var}={text!r} is not a number") from None
    dirs = []
    for part in environ.get(ENV_ALLOWED_DIRS, "").split(os.pathsep):
        if not part.strip():
            continue
        if not os.path.isabs(part) or not os.path.isdir(part):
            raise ValueError(f"{ENV_ALLOWED_DIRS}: {part!r} is not an absolute path to a folder")
        dirs.append(os.path.realpath(part))
    values["allowed_dirs"] = tuple(dirs)
    return ServeSettings(**values)


def read_rows(model_input: object) -> list[dict[str, str | None]]:
    """``{"audio": ..., "path": ...}`` per input row (absent or empty: None); other
    columns are ignored, so every row gets its answer.

    Raises:
        RowError: the input is not a table (the whole request is answered with it).
    """
    if not isinstance(model_input, pd.DataFrame):
        raise RowError(f"input must be a table of rows, got {type(model_input).__name__}")
    columns = {c: model_input[c].tolist() for c in INPUT_COLUMNS if c in model_input.columns}
    return [
        {c: columns[c][i] if c in columns else None for c in INPUT_COLUMNS}
        for i in range(len(model_input))
    ]


def _present(value: object) -> bool:
    return not (value is None or value == "" or (isinstance(value, float) and math.isnan(value)))


def _decoded_size(text: str) -> int:
    return len(text) // 4 * 3


def request_refusal(rows: list[dict[str, str | None]], settings: ServeSettings) -> str | None:
    """Why a whole request is refused (too many rows, too many bytes), else None; counted
    from the rows' text, before anything is decoded."""
    if len(rows) > settings.max_rows:
        return (
            f"request refused: {len(rows)} rows; the limit is {settings.max_rows} "
            f"({ENV_LIMITS['max_rows']})"
        )
    total = sum(_decoded_size(r["audio"]) for r in rows if isinstance(r["audio"], str))
    if total > settings.max_request_bytes:
        return (
            f"request refused: {total} bytes of audio; the limit is "
            f"{settings.max_request_bytes} ({ENV_LIMITS['max_request_bytes']})"
        )
    return None


def decode_audio(text: object, settings: ServeSettings) -> bytes:
    """A row's ``audio``: its size checked on the text, then decoded from base64.

    Raises:
        RowError: not a string, too many bytes, or not base64.
    """
    if not isinstance(text, str):
        raise RowError(f"'audio' must be a base64 string, got {type(text).__name__}")
    size = _decoded_size(text)
    if size > settings.max_row_bytes:
        raise RowError(
            f"audio of {size} bytes; the limit is {settings.max_row_bytes} "
            f"({ENV_LIMITS['max_row_bytes']})"
        )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RowError("'audio' is not valid base64") from None


def _inside(real: str, folders: tuple[str, ...]) -> bool:
    return any(Path(real).is_relative_to(folder) for folder in folders)


def open_allowed_file(path: object, settings: ServeSettings) -> BinaryIO:
    """Opens a row's ``path`` for reading when the server may read it.

    The path is resolved with every link followed; its real path must lie inside an
    allowed folder and be a regular file (never a FIFO, a device, a socket or a
    directory: those are not opened). On Linux the open descriptor's own path is
    checked again, so that a folder swapped for a link after the check is refused.

    Raises:
        RowError: ``PATHS_OFF`` when no folder is allowed, else ``PATH_REFUSED``:
            one text for every refusal, whether the file exists or not.
    """
    if not settings.allowed_dirs:
        raise RowError(PATHS_OFF)
    if not isinstance(path, str) or "\0" in path or not os.path.isabs(path):
        raise RowError(PATH_REFUSED)
    real = os.path.realpath(path)
    if not _inside(real, settings.allowed_dirs):
        raise RowError(PATH_REFUSED)
    try:
        f = open_regular_file(real)
    except AudioReadError:
        raise RowError(PATH_REFUSED) from None
    proc = f"/proc/self/fd/{f.fileno()}"
    if os.path.exists(proc) and not _inside(os.path.realpath(proc), settings.allowed_dirs):
        f.close()
        raise RowError(PATH_REFUSED)
    return f


def row_source(
    row: dict[str, str | None], index: int, settings: ServeSettings
) -> tuple[BinaryIO, str]:
    """What to decode for one row and how its errors name it: ``(file, name)``.

    ``audio`` wins when a row sends both. The caller closes the file.

    Raises:
        RowError: the row sends nothing usable, or its path is refused.
    """
    if _present(row["audio"]):
        return io.BytesIO(decode_audio(row["audio"], settings)), f"row {index}"
    if _present(row["path"]):
        return open_allowed_file(row["path"], settings), str(row["path"])
    raise RowError(NO_INPUT)
