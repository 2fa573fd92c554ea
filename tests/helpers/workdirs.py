"""A prepared work dir without audio: kept.parquet and folds.parquet written in the
schemas of `audiotag.data.schemas`, for the steps that read them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from audiotag.data.schemas import FOLDS_SCHEMA, KEPT_SCHEMA
from audiotag.steps.workspace import Workspace


def write_prepared(
    ws: Workspace,
    counts: Mapping[str, int],
    n_folds: int,
    vocab: Sequence[str],
    labels: Mapping[str, list[str]] | None = None,
) -> None:
    """``counts[subset]`` kept clips per subset, all in the folds.

    Clip ``i`` of a subset is ``<first letter><i:02d>.wav`` (``c00.wav``, ``n14.wav``),
    labelled ``vocab[i % 2]`` (or ``labels[fname]``), held out by fold ``i % n_folds``.
    The other metadata columns are null.
    """
    kept, folds = [], []
    for subset, n in counts.items():
        for i in range(n):
            fname = f"{subset[0]}{i:02d}.wav"
            own = (labels or {}).get(fname, [vocab[i % 2]])
            kept.append({"fname": fname, "subset": subset, "labels": own})
            folds.append({"subset": subset, "fname": fname, "fold": i % n_folds})
    ws.root.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(kept, schema=KEPT_SCHEMA), ws.kept)
    pq.write_table(pa.Table.from_pylist(folds, schema=FOLDS_SCHEMA), ws.folds)
