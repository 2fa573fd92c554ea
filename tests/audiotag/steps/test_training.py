"""The stage plan: which stages run on a dataset, and what each starts from."""

import pytest

from audiotag.config import load_config
from audiotag.steps.dataset import DatasetInfo
from audiotag.steps.training import PlannedStage, plan_stages

THIRD = {
    "stages.+": {
        "name": "plus",
        "subsets": ["curated", "noisy"],
        "init": "curated",
        "cycles": [{"epochs": 1, "lr": 1e-3}],
    }
}


def info(**counts: int) -> DatasetInfo:
    return DatasetInfo("d", "fp", ("a", "b"), sum(counts.values()), 0, tuple(counts.items()))


def test_the_reference_stages_run_in_order_each_from_the_one_before() -> None:
    plan = plan_stages(load_config("demo", THIRD), info(curated=10, noisy=10))
    assert plan == (
        PlannedStage("noisy", None),
        PlannedStage("curated", "noisy"),
        PlannedStage("plus", "curated"),
    )


def test_without_noisy_clips_the_noisy_stage_is_skipped_and_curated_starts_from_scratch() -> None:
    plan = plan_stages(load_config("demo"), info(curated=10))
    assert plan == (PlannedStage("curated", None),)


def test_a_last_stage_without_clips_is_refused_before_any_training() -> None:
    with pytest.raises(ValueError, match="'curated'.*no kept clips"):
        plan_stages(load_config("demo"), info(noisy=10))
