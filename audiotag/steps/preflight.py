"""Checks before any work: a run that cannot succeed fails in seconds, naming the cause.

The CLI runs them before the flow (and its temporary Prefect server) starts, and the
flow's first step runs them again for runs started from the UI. Each raises a
`UsageError` whose message is the first failing cause, on one line. They read only
the CSVs, never the audio, so they take well under a second on FAT2019's.
"""

from __future__ import annotations

import errno
import os
import shutil
import zipfile
from pathlib import Path

from audiotag.config import TrainConfig
from audiotag.data.layout import (
    LABEL_CSVS,
    SAMPLE_SUBMISSION,
    SUBSETS,
    LayoutError,
    check_layout,
    read_subset,
    read_vocabulary,
)
from audiotag.errors import UsageError
from audiotag.steps.workspace import Workspace
from audiotag.storage import write_problem

# The free space a run needs in its work dir at the start (the features, models and
# the tracking store of a small run fit; FAT2019's features need about 10 GB more).
MIN_FREE_ENV = "AUDIOTAG_MIN_FREE_MB"
DEFAULT_MIN_FREE_MB = 512
NAMED_SOURCES = ("demo", "kaggle")


def min_free_bytes() -> int:
    """The free space a work dir needs at the start: ``AUDIOTAG_MIN_FREE_MB`` or 512 MB."""
    raw = os.environ.get(MIN_FREE_ENV, "")
    try:
        return int(float(raw or DEFAULT_MIN_FREE_MB) * 2**20)
    except ValueError:
        raise UsageError(f"{MIN_FREE_ENV}={raw!r} is not a number of megabytes") from None


def check_workdir(ws: Workspace, need: int | None = None) -> None:
    """Makes the work dir if it is missing and checks that it is writable and has room.

    Args:
        ws: the work dir.
        need: bytes that must be free on its disk; None: `min_free_bytes`.

    Raises:
        UsageError: it cannot be made, is read-only, or its disk is (nearly) full.
    """
    root = ws.root
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"work dir {root} is a file, not a directory") from None
    except NotADirectoryError:
        raise UsageError(f"work dir {root} cannot be made: a part of its path is a file") from None
    except OSError as err:
        why = "read-only" if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else "failed"
        raise UsageError(
            f"work dir {root} cannot be made ({why}: {err.strerror}); choose another --workdir"
        ) from None
    problem = write_problem(root)
    if problem is not None:
        raise UsageError(f"work dir {problem}; choose a writable --workdir")
    need = min_free_bytes() if need is None else need
    free = shutil.disk_usage(root).free
    if free < need:
        raise UsageError(
            f"work dir {root}: its disk has {free / 2**20:.0f} MB free, a run needs at least "
            f"{need / 2**20:.0f} MB ({MIN_FREE_ENV}); free space or choose a --workdir on "
            "a larger disk"
        )


def check_source(source: str, config: TrainConfig) -> None:
    """A local source exists and is readable; a dataset folder passes `check_dataset`.

    ``demo`` and ``kaggle`` are checked once they are in the work dir (the flow runs
    `check_dataset` after the download), as is a zip once it is unpacked.

    Raises:
        LayoutError: the source is missing, not a folder or zip, or not in the layout.
        UsageError: it cannot be read, or its CSVs cannot train ``config``.
    """
    if source in NAMED_SOURCES:
        return
    path = Path(source).expanduser()
    if not path.exists():
        raise LayoutError(
            f"--source {source}: no such file or directory (expected 'demo', 'kaggle', a "
            "dataset directory or the competition zip)"
        )
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise UsageError(f"--source {source}: cannot be read (permission denied)")
    if path.is_dir():
        check_dataset(path, config)
    elif not zipfile.is_zipfile(path):
        raise LayoutError(f"--source {source}: neither a directory nor a zip archive")


def _label_csvs(data_dir: Path) -> list[Path]:
    names = [*LABEL_CSVS.values(), SAMPLE_SUBMISSION]
    return [data_dir / n for n in names if (data_dir / n).exists()]


def check_dataset(data_dir: Path, config: TrainConfig) -> None:
    """The layout's CSVs can train ``config``: read from the CSVs alone (no audio).

    Every CSV present is readable and has its required columns; each training subset
    with labelled clips has at least one clip with a label in the vocabulary, and at
    least ``folds.n_folds`` labelled clips.

    Raises:
        LayoutError: not in the layout, or a CSV lacks a required column.
        UsageError: a CSV cannot be read, or a subset cannot make the folds.
    """
    check_layout(data_dir)
    for csv_path in _label_csvs(data_dir):
        if not os.access(csv_path, os.R_OK):
            raise UsageError(f"{csv_path}: cannot be read (permission denied)")
    files = {s: read_subset(data_dir, s) for s in SUBSETS}  # every CSV's columns first
    vocab = set(read_vocabulary(data_dir))
    n_folds = config.folds.n_folds
    used = sorted({s for st in config.stages for s in st.subsets})
    # Subsets without labelled clips are skipped with their stages (plan_stages).
    labelled = {
        s: [f for f in files[s] if f.labels] for s in used if any(f.labels for f in files[s])
    }
    for subset, clips in labelled.items():
        if not any(set(f.labels) & vocab for f in clips):
            outside = sorted({label for f in clips for label in f.labels})
            raise UsageError(
                f"{data_dir / LABEL_CSVS[subset]}: every clip's labels are outside the "
                f"vocabulary of {SAMPLE_SUBMISSION} ({len(clips)} clips; their labels: "
                f"{_some(outside)}); nothing to train on"
            )
    for subset, clips in labelled.items():
        if len(clips) < n_folds:
            fewer = f"lower it (--set folds.n_folds={len(clips)}) or " if len(clips) > 1 else ""
            raise UsageError(
                f"{data_dir / LABEL_CSVS[subset]}: {len(clips)} labelled clips cannot make "
                f"folds.n_folds={n_folds} folds; {fewer}add clips"
            )


def _some(names: list[str], n: int = 5) -> str:
    shown = ", ".join(repr(x) for x in names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")
