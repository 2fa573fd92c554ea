from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.model_selection import KFold

from audiotag.config import FoldSettings
from audiotag.data.folds import assign_folds, make_folds
from audiotag.data.schemas import FOLDS_SCHEMA, KEPT_SCHEMA


def _labels(n: int, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    vocab = [f"c{i}" for i in range(8)]
    return [list(rng.choice(vocab, size=rng.integers(1, 4), replace=False)) for _ in range(n)]


def test_kfold_is_the_reports_split() -> None:
    labels = _labels(103)
    folds = assign_folds(labels, FoldSettings())
    for k, (_, valid) in enumerate(KFold(5, shuffle=True, random_state=42).split(labels)):
        assert set(np.flatnonzero(folds == k)) == set(valid)


def test_stratified_folds_balance_labels() -> None:
    labels = _labels(300, seed=1)
    folds = assign_folds(labels, FoldSettings(method="stratified"))
    assert set(folds) == set(range(5))
    counts = np.array(
        [[sum("c0" in labels[i] for i in np.flatnonzero(folds == k))] for k in range(5)]
    ).ravel()
    assert counts.max() - counts.min() <= 2


def test_too_few_items_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="3 items cannot make 5 folds"):
        assign_folds([["a"]] * 3, FoldSettings())


def test_make_folds_writes_every_kept_training_file_once(tmp_path: Path) -> None:
    rows = [
        {"fname": f"{subset[0]}{i}.wav", "subset": subset, "labels": labels}
        for subset in ("curated", "noisy", "test")
        for i, labels in enumerate(_labels(12))
    ]
    kept = tmp_path / "kept.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=KEPT_SCHEMA), kept)
    table = pq.read_table(make_folds(kept, tmp_path / "folds.parquet", FoldSettings()))
    assert table.schema.equals(FOLDS_SCHEMA)
    got = table.to_pylist()
    assert sorted((r["subset"], r["fname"]) for r in got) == sorted(
        (r["subset"], r["fname"]) for r in rows if r["subset"] != "test"
    )
    assert {r["fold"] for r in got} == set(range(5))
