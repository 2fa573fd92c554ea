"""Dropping the files training must not see, each recorded with its reason (SPEC §1).

Never deletes audio: the kept and rejected rows are two tables,
`audiotag.data.schemas.KEPT_SCHEMA` and `REJECTED_SCHEMA`.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from audiotag.data.layout import KAGGLE_CORRUPT_FILES
from audiotag.data.metadata import NOT_REGULAR_PREFIX, OUTSIDE_PREFIX, UNLISTED_ERROR
from audiotag.data.schemas import KEPT_SCHEMA, REJECTED_SCHEMA
from audiotag.storage import write_parquet_atomic

# Reasons a file is rejected; the detail column says more.
REASON_KAGGLE = "kaggle_corrupt_list"
REASON_UNREADABLE = "unreadable"
REASON_SILENT = "all_silent"
REASON_MISSING = "missing"
REASON_DUPLICATE = "duplicate"
REASON_UNLISTED = "unlisted"
REASON_NO_LABELS = "no_labels"
# Decided from the name and os.stat, the file never opened.
REASON_OUTSIDE = OUTSIDE_PREFIX
REASON_NOT_REGULAR = NOT_REGULAR_PREFIX
_REASON_OF_ERROR = (REASON_MISSING, REASON_OUTSIDE, REASON_NOT_REGULAR)


def rejection(row: dict, seen: set[tuple[str, str]]) -> tuple[str, str] | None:
    """``(reason, detail)`` when a metadata row must not be trained on or tagged, else None.

    Args:
        row: a ``metadata.parquet`` row.
        seen: the ``(subset, fname)`` of the rows before it: a repeat is rejected.
    """
    if row["subset"] == "curated" and row["fname"] in KAGGLE_CORRUPT_FILES:
        return REASON_KAGGLE, "listed by Kaggle as corrupt or empty"
    if (row["subset"], row["fname"]) in seen:
        return REASON_DUPLICATE, "file named twice in the CSV"
    if row["error"] == UNLISTED_ERROR:
        return REASON_UNLISTED, row["error"]
    if row["error"] is not None:
        reason = row["error"].partition(":")[0]
        return (reason if reason in _REASON_OF_ERROR else REASON_UNREADABLE), row["error"]
    if row["subset"] != "test" and not row["labels"]:
        return REASON_NO_LABELS, "a training file with an empty label string"
    if not row["nonsilent"]:
        return REASON_SILENT, "no sound above digital silence"
    return None


def filter_corrupt(metadata_path: Path, kept_path: Path, rejected_path: Path) -> tuple[int, int]:
    """Splits metadata into kept rows and rejected rows with a reason each.

    Rejects Kaggle's six known corrupt curated files, unreadable, empty or
    all-silent files, files no CSV names, names reaching outside their subset's
    folder or something other than a regular file, training files without labels,
    and repeated (subset, fname) rows. Never deletes audio.

    Returns:
        ``(kept, rejected)`` counts.
    """
    kept, rejected = [], []
    seen: set[tuple[str, str]] = set()
    for row in pq.read_table(metadata_path).to_pylist():
        found = rejection(row, seen)
        seen.add((row["subset"], row["fname"]))
        if found is None:
            kept.append(row)
            continue
        reason, detail = found
        rejected.append(
            {
                "fname": row["fname"],
                "subset": row["subset"],
                "path": row["path"],
                "reason": reason,
                "detail": detail,
            }
        )
    write_parquet_atomic(pa.Table.from_pylist(kept, schema=KEPT_SCHEMA), kept_path)
    write_parquet_atomic(pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA), rejected_path)
    return len(kept), len(rejected)
