"""A prepared work dir without audio (kept.parquet and folds.parquet written in the
schemas of `audiotag.data.schemas`, for the steps that read them), and a folder nobody
can write."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

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


@contextmanager
def read_only_dir(path: Path) -> Iterator[Path]:
    """A folder nobody can write, root included: without root its mode is 0555; as root
    (whom permissions do not stop) a read-only tmpfs mounted on it."""
    path.mkdir(parents=True)
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"running as root and cannot mount a read-only tmpfs: {mounted.stderr!r}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)
