"""audiotag/steps/dataset.py: a subset's fold split, the rows a stage trains and is scored
on, and multi-hot targets over the vocabulary."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiotag.config import StageSettings
from audiotag.steps.dataset import DatasetInfo, split_fold, stage_rows, targets
from audiotag.steps.workspace import Workspace
from tests.helpers.workdirs import write_prepared

VOCAB = ("a", "b", "c")
N_FOLDS = 3


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    """9 curated and 12 noisy clips in 3 folds (fold = index mod 3)."""
    ws = Workspace.at(tmp_path / "work")
    write_prepared(ws, {"curated": 9, "noisy": 12}, N_FOLDS, VOCAB)
    return ws


def names(rows: list[dict]) -> set[str]:
    return {r["fname"] for r in rows}


@pytest.mark.parametrize(("subset", "n"), [("curated", 9), ("noisy", 12)])
def test_a_folds_training_and_held_out_parts_partition_its_subset(
    ws: Workspace, subset: str, n: int
) -> None:
    everything = {f"{subset[0]}{i:02d}.wav" for i in range(n)}
    held_out_by_some_fold = set()
    for k in range(N_FOLDS):
        train, held = split_fold(ws, subset, k)
        assert names(train) | names(held) == everything
        assert not names(train) & names(held)
        assert names(held) == {f"{subset[0]}{i:02d}.wav" for i in range(k, n, N_FOLDS)}
        assert {r["subset"] for r in train + held} == {subset}  # never the other subset's
        held_out_by_some_fold |= names(held)
    assert held_out_by_some_fold == everything  # each clip is held out once


def test_a_stage_over_two_subsets_trains_on_both_and_is_scored_on_the_first(
    ws: Workspace,
) -> None:
    stage = StageSettings(
        name="both", subsets=("noisy", "curated"), cycles=[{"epochs": 1, "lr": 1e-3}]
    )
    for k in range(N_FOLDS):
        train, valid = stage_rows(ws, stage, k)
        noisy_train, noisy_held = split_fold(ws, "noisy", k)
        curated_train, curated_held = split_fold(ws, "curated", k)
        assert names(train) == names(noisy_train) | names(curated_train)
        assert len(train) == len(noisy_train) + len(curated_train)  # no clip twice
        assert names(valid) == names(noisy_held)
        # The second subset's held-out clips are neither trained on nor scored.
        assert not names(curated_held) & (names(train) | names(valid))


def test_targets_are_multi_hot_over_the_vocabulary_and_ignore_other_labels() -> None:
    rows = [
        {"labels": ["b"]},
        {"labels": ["c", "a"]},
        {"labels": ["not-in-the-vocabulary"]},
        {"labels": ["a", "elsewhere"]},
    ]
    got = targets(rows, VOCAB)
    assert got.shape == (4, 3) and got.dtype == bool
    assert got.astype(int).tolist() == [[0, 1, 0], [1, 0, 1], [0, 0, 0], [1, 0, 0]]


def test_a_models_data_key_follows_the_files_labels_and_vocabulary_not_the_counts() -> None:
    info = DatasetInfo("/data", "fp-0", VOCAB, 21, 0, (("curated", 9), ("noisy", 12)))
    assert info.count("noisy") == 12 and info.count("test") == 0
    same = DatasetInfo("/elsewhere", "fp-0", VOCAB, 20, 1)
    assert same.model_key == info.model_key
    assert DatasetInfo("/data", "fp-1", VOCAB, 21, 0).model_key != info.model_key
    assert DatasetInfo("/data", "fp-0", (*VOCAB, "d"), 21, 0).model_key != info.model_key
