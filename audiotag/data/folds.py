"""Cross-validation folds, persisted so that every stage and re-run sees the same split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.model_selection import KFold

from audiotag.config import FoldSettings
from audiotag.data.layout import TRAIN_SUBSETS
from audiotag.data.schemas import FOLDS_SCHEMA
from audiotag.storage import write_parquet_atomic


def assign_folds(labels: list[list[str]], settings: FoldSettings) -> np.ndarray:
    """The held-out fold of each item, in input order.

    ``kfold``: ``KFold(n, shuffle=True, random_state=seed)`` as the report.
    ``stratified``: multilabel iterative stratification (Sechidis et al. 2011).
    """
    n = len(labels)
    if n < settings.n_folds:
        raise ValueError(f"{n} items cannot make {settings.n_folds} folds")
    fold = np.full(n, -1, dtype=np.int32)
    if settings.method == "kfold":
        splitter = KFold(settings.n_folds, shuffle=True, random_state=settings.seed)
        splits = splitter.split(np.zeros(n))
    else:
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

        vocab = sorted({label for row in labels for label in row})
        y = np.array([[label in row for label in vocab] for row in labels], dtype=np.int8)
        splitter = MultilabelStratifiedKFold(
            settings.n_folds, shuffle=True, random_state=settings.seed
        )
        splits = splitter.split(np.zeros(n), y)
    for k, (_, valid_idx) in enumerate(splits):
        fold[valid_idx] = k
    return fold


def make_folds(kept_path: Path, folds_path: Path, settings: FoldSettings) -> Path:
    """Writes ``folds.parquet``: the held-out fold of every kept training file."""
    table = pq.read_table(kept_path, columns=["subset", "fname", "labels"]).to_pylist()
    rows = []
    for subset in TRAIN_SUBSETS:
        items = [r for r in table if r["subset"] == subset]
        if not items:
            continue
        folds = assign_folds([r["labels"] for r in items], settings)
        rows += [
            {"subset": subset, "fname": r["fname"], "fold": int(k)}
            for r, k in zip(items, folds, strict=True)
        ]
    return write_parquet_atomic(pa.Table.from_pylist(rows, schema=FOLDS_SCHEMA), folds_path)
