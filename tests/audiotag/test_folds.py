import numpy as np
import pytest
from sklearn.model_selection import KFold

from audiotag.config import FoldSettings
from audiotag.data.folds import assign_folds


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
