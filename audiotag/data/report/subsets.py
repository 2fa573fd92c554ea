"""The dataset report's input: ``metadata.parquet`` read into one summary per subset."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from audiotag.data.layout import SUBSETS
from audiotag.data.schemas import METADATA_SCHEMA

METADATA_COLUMNS = [
    "fname",
    "subset",
    "labels",
    "sample_rate",
    "channels",
    "sample_format",
    "duration",
    "peak_db",
    "rms_db",
    "nonsilent_duration",
    "error",
]
assert set(METADATA_COLUMNS) <= set(METADATA_SCHEMA.names)


@dataclass
class SubsetSummary:
    """One subset's rows as plain arrays and lists.

    The numeric arrays hold the readable rows only (``error`` null, value
    finite); ``labels`` holds every row's labels, an empty list where none.
    """

    name: str
    files: int
    readable: int
    labels: list[list[str]]
    duration: np.ndarray
    peak_db: np.ndarray
    rms_db: np.ndarray
    nonsilent_share: np.ndarray
    sample_rates: list[int]
    channels: list[int]
    sample_formats: list[str]

    @property
    def has_labels(self) -> bool:
        """Whether any row of the subset has a label (test labels may be absent)."""
        return any(self.labels)


def load_subsets(path: Path) -> list[SubsetSummary]:
    """Reads the metadata columns the report needs, split by subset.

    Returns:
        One entry per subset of ``SUBSETS``, in that order and empty ones
        included, then one per other subset name found in the file.
    """
    table = pq.read_table(path, columns=METADATA_COLUMNS)
    cols = {name: table.column(name).to_pylist() for name in METADATA_COLUMNS}
    found = {s for s in cols["subset"] if s not in SUBSETS}
    names = [*SUBSETS, *sorted(found, key=lambda s: (s is None, str(s)))]
    by_subset: dict[Any, list[int]] = {name: [] for name in names}
    for i, subset in enumerate(cols["subset"]):
        by_subset[subset].append(i)

    out = []
    for name, rows in by_subset.items():
        ok = [i for i in rows if cols["error"][i] is None]

        def floats(col: str, ok: list[int] = ok) -> np.ndarray:
            return np.array(
                [np.nan if cols[col][i] is None else cols[col][i] for i in ok], dtype=np.float64
            )

        duration, nonsilent = floats("duration"), floats("nonsilent_duration")
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(duration > 0, nonsilent / duration, np.nan)
        out.append(
            SubsetSummary(
                name=str(name),
                files=len(rows),
                readable=len(ok),
                labels=[list(cols["labels"][i] or []) for i in rows],
                duration=_finite(duration),
                peak_db=_finite(floats("peak_db")),
                rms_db=_finite(floats("rms_db")),
                nonsilent_share=np.clip(_finite(share), 0.0, 1.0),
                # A file that failed after its header was read still tells its format.
                sample_rates=_distinct(cols["sample_rate"][i] for i in rows),
                channels=_distinct(cols["channels"][i] for i in rows),
                sample_formats=_distinct(cols["sample_format"][i] for i in rows),
            )
        )
    return out


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def _distinct(values: Iterable[Any]) -> list[Any]:
    return sorted({v for v in values if v is not None})
