"""Free disk space, checked before a byte is downloaded or unpacked."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from audiotag.errors import UsageError
from audiotag.sources.kaggle.progress import format_bytes

# Unpacking writes the outer members (the nested zips, about the archive's size)
# and then each nested zip's files, deleting each nested zip once it is unpacked:
# at the peak about twice the archive's size on top of the archive itself.
UNPACK_FACTOR = 2.0
SKIP_DISK_CHECK_ENV = "AUDIOTAG_SKIP_DISK_CHECK"


class DiskSpaceError(RuntimeError, UsageError):
    """Not enough free disk space for the download and its extraction."""


def _existing(path: Path) -> Path:
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk_space(needs: list[tuple[Path, int, str]]) -> None:
    """Raises DiskSpaceError unless every filesystem has room for what goes onto it.

    Args:
        needs: ``(where, bytes, what for)`` items; items on one filesystem add up.
    """
    if os.environ.get(SKIP_DISK_CHECK_ENV) == "1":
        return
    by_device: dict[int, tuple[Path, int, list[str]]] = {}
    for where, nbytes, what in needs:
        anchor = _existing(where)
        dev = anchor.stat().st_dev
        first, total, parts = by_device.get(dev, (anchor, 0, []))
        by_device[dev] = (first, total + nbytes, [*parts, f"{format_bytes(nbytes)} {what}"])
    for anchor, need, parts in by_device.values():
        free = shutil.disk_usage(anchor).free
        if free < need:
            raise DiskSpaceError(
                f"not enough free disk space in {anchor}: {format_bytes(need)} needed "
                f"({' + '.join(parts)}), {format_bytes(free)} free. Free up at least "
                f"{format_bytes(need - free)} or choose a --workdir on a larger disk "
                f"(set {SKIP_DISK_CHECK_ENV}=1 to skip this check)."
            )
