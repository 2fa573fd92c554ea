"""What a fold's cached result is keyed on: only what changes its weights or scores."""

from pathlib import Path

import pytest

from audiotag.config import load_config
from audiotag.steps.dataset import DatasetInfo
from audiotag.steps.keys import fold_result_key, stage_key

FP = "datakey0"


def key(stage: str = "noisy", fold: int = 0, init: Path | None = None, **overrides) -> str:
    return fold_result_key(load_config("demo", overrides), stage, fold, FP, init)


@pytest.mark.parametrize(
    "change",
    [
        {"eval.tta": 5},
        {"eval.ensemble": "gmean"},
        {"curated.cycles": [{"epochs": 30, "lr": 1e-3}]},
        {"curated.batch_size": 8},
        {"registry.model_name": "birds"},  # where the ensemble is registered
    ],
    ids=["tta", "ensemble", "curated-cycles", "curated-batch", "model-name"],
)
def test_test_time_and_later_stage_settings_leave_the_noisy_key_alone(change: dict) -> None:
    assert key(**change) == key()


@pytest.mark.parametrize(
    "change",
    [
        {"noisy.cycles": [{"epochs": 1, "lr": 1e-3}]},
        {"seed": 7},
        {"mel.n_mels": 32},
        {"model.widen": 0.75},
        {"eval.pooling": "max"},  # the validation scores change
        {"folds.n_folds": 4},
    ],
    ids=["noisy-cycles", "seed", "mel", "model", "pooling", "n-folds"],
)
def test_what_changes_a_fold_changes_its_key(change: dict) -> None:
    assert key(**change) != key()


def test_curated_key_follows_its_settings_and_its_initial_weights(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"weights a")
    b.write_bytes(b"weights b")
    assert key("curated", init=a) == key("curated", init=tmp_path / "a.pt")
    assert key("curated", init=a) != key("curated", init=b)
    assert key("curated", init=a, **{"curated.batch_size": 8}) != key("curated", init=a)
    assert key("curated", init=a, **{"eval.tta": 5}) == key("curated", init=a)
    assert key("noisy", fold=1) != key("noisy", fold=0)


def test_a_new_vocabulary_column_changes_the_models_key() -> None:
    a = DatasetInfo("d", "fp", ("Bark", "Meow"), 10, 0)
    b = DatasetInfo("d", "fp", ("Bark", "Meow", "Purr"), 10, 0)
    assert a.model_key != b.model_key
    assert a.model_key == DatasetInfo("elsewhere", "fp", ("Bark", "Meow"), 9, 1).model_key


THIRD = {
    "stages.+": {
        "name": "plus",
        "subsets": ["curated", "noisy"],
        "init": "curated",
        "cycles": [{"epochs": 1, "lr": 1e-3}],
    }
}


def test_a_stage_key_holds_its_lineage_and_nothing_after_it() -> None:
    base, three = load_config("demo"), load_config("demo", THIRD)
    # Adding a stage after them leaves the earlier stages' keys (and models) alone.
    for stage in ("noisy", "curated"):
        assert stage_key(base, stage, FP) == stage_key(three, stage, FP)
    # The third stage's key follows the settings of the stages it starts from.
    changed = load_config("demo", {**THIRD, "noisy.batch_size": 8})
    assert stage_key(changed, "plus", FP) != stage_key(three, "plus", FP)
    assert stage_key(changed, "curated", FP) != stage_key(three, "curated", FP)
