"""Every Parquet table audiotag writes, defined here and nowhere else (SPEC §4).

| file | schema |
|---|---|
| ``metadata.parquet`` | `METADATA_SCHEMA`: one row per audio file, read errors included |
| ``kept.parquet`` | `KEPT_SCHEMA`: the metadata rows that passed `filter_corrupt` |
| ``rejected.parquet`` | `REJECTED_SCHEMA`: each rejected file with its reason |
| ``folds.parquet`` | `FOLDS_SCHEMA`: the held-out fold of every kept training file |
| a feature store's ``index.parquet`` | `STORE_INDEX_SCHEMA`: where each clip's frames lie |
| ``valid.parquet``, ``oof.parquet`` | `label_table_schema`: fname, fold, one column per label |
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from audiotag.storage import write_parquet_atomic

INTERVAL = pa.struct([("start", pa.int64()), ("end", pa.int64())])

METADATA_SCHEMA = pa.schema(
    [
        ("fname", pa.string()),
        ("subset", pa.string()),
        ("labels", pa.list_(pa.string())),
        ("path", pa.string()),  # relative to the data directory
        ("file_size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("sha1", pa.string()),
        ("frames", pa.int64()),
        ("sample_rate", pa.int32()),
        ("channels", pa.int32()),
        ("sample_format", pa.string()),
        ("duration", pa.float64()),
        ("peak_db", pa.float64()),
        ("rms_db", pa.float64()),
        ("nonsilent", pa.list_(INTERVAL)),  # sample intervals at the file's own rate
        ("nonsilent_duration", pa.float64()),
        # The threshold that found ``nonsilent``: a row is reused only at the same one.
        ("silence_top_db", pa.float64()),
        ("error", pa.string()),  # null when the file was read
    ]
)

# Filtering drops rows, never columns.
KEPT_SCHEMA = METADATA_SCHEMA

REJECTED_SCHEMA = pa.schema(
    [
        ("fname", pa.string()),
        ("subset", pa.string()),
        ("path", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)

FOLDS_SCHEMA = pa.schema([("subset", pa.string()), ("fname", pa.string()), ("fold", pa.int32())])

STORE_INDEX_SCHEMA = pa.schema(
    [
        ("fname", pa.string()),
        ("subset", pa.string()),
        ("offset", pa.int64()),
        ("frames", pa.int64()),
    ]
)

# The columns of a label table before its one column per label.
LABEL_TABLE_KEYS: tuple[str, ...] = ("fname", "fold")


def label_table_schema(vocab: Sequence[str]) -> pa.Schema:
    """``valid.parquet`` (one fold's held-out clips) and ``oof.parquet`` (all folds').

    Args:
        vocab: the label vocabulary, in submission column order.

    Returns:
        ``fname`` string, ``fold`` int64 (0-based), then one float32 probability
        column per label of ``vocab``.

    Raises:
        ValueError: a label repeats or is named like a key column.
    """
    clash = sorted({v for v in vocab if v in LABEL_TABLE_KEYS or list(vocab).count(v) > 1})
    if clash:
        raise ValueError(f"labels {clash} repeat or clash with the columns {LABEL_TABLE_KEYS}")
    return pa.schema(
        [("fname", pa.string()), ("fold", pa.int64())] + [(v, pa.float32()) for v in vocab]
    )


def label_table(
    fnames: Sequence[str], fold: int | Sequence[int], probs: np.ndarray, vocab: Sequence[str]
) -> pd.DataFrame:
    """A label table (`label_table_schema`) as a DataFrame; `write_label_table` writes it.

    ``oof.parquet`` is the concatenation of the folds' tables
    (``pd.concat(parts, ignore_index=True)``), with the same schema.

    Args:
        fnames: the clips, one per row of ``probs``.
        fold: the fold that held them out: one for all rows, or one per row.
        probs: ``(len(fnames), len(vocab))`` probabilities.
        vocab: the label vocabulary, in submission column order.

    Raises:
        ValueError: ``probs``, ``fnames`` or ``fold`` do not agree in shape.
    """
    label_table_schema(vocab)  # checks the column names
    probs = np.asarray(probs, dtype=np.float32)
    if probs.shape != (len(fnames), len(vocab)):
        raise ValueError(
            f"probs has shape {probs.shape}, expected {(len(fnames), len(vocab))} (files, labels)"
        )
    folds = np.asarray(fold, dtype=np.int64)
    if folds.ndim == 0:
        folds = np.full(len(fnames), folds, dtype=np.int64)
    elif folds.shape != (len(fnames),):
        raise ValueError(f"{len(folds)} folds given for {len(fnames)} files")
    frame = pd.DataFrame(probs, columns=list(vocab))
    frame.insert(0, "fold", folds)
    frame.insert(0, "fname", list(fnames))
    return frame


def write_label_table(frame: pd.DataFrame, vocab: Sequence[str], path: Path) -> Path:
    """Writes a label table (one fold's, or their concatenation) atomically, in
    `label_table_schema`.

    Raises:
        ValueError: the frame's columns are not fname, fold and ``vocab``, in order.
    """
    schema = label_table_schema(vocab)
    if list(frame.columns) != schema.names:
        raise ValueError(f"label table columns {list(frame.columns)}, expected {schema.names}")
    return write_parquet_atomic(pa.Table.from_pandas(frame, schema, preserve_index=False), path)


# One row per noisy clip of the folds: kept or not, and why.
SELECTION_SCHEMA = pa.schema(
    [
        ("fname", pa.string()),
        ("labels", pa.list_(pa.string())),  # the clip's own labels
        ("new_labels", pa.list_(pa.string())),  # what a kept clip trains with
        ("clip_lwlrap", pa.float64()),  # its prediction against its own labels; null: none
        ("kept", pa.bool_()),
        ("reason", pa.string()),  # one of REASONS
    ]
)
