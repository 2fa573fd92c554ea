"""audiotag/config/settings.py: what a stage list and a noisy selection must be, and
model files written before stages were a list."""

import pytest

from audiotag.config import TrainConfig, load_config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"stages.1.init": "later"}, "not an earlier stage"),
        ({"stages.1.name": "noisy"}, "used twice"),
        ({"stages.0.subsets": []}, "at least 1"),
        ({"stages.0.subsets": ["test"]}, "curated"),
        ({"stages.0.name": "Bad Name"}, "pattern"),
    ],
)
def test_a_bad_stage_list_is_refused_naming_the_problem(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config("demo", overrides)


def test_an_unknown_stage_name_is_a_key_error_naming_the_stages() -> None:
    with pytest.raises(KeyError, match="noisy"):
        load_config("demo").stage("plus")


def test_a_model_file_written_before_stages_were_a_list_still_loads() -> None:
    legacy = load_config("demo").model_dump(mode="json")
    noisy, curated = (
        {k: v for k, v in st.items() if k not in ("name", "subsets", "init")}
        for st in legacy.pop("stages")
    )
    config = TrainConfig.model_validate({**legacy, "noisy": noisy, "curated": curated})
    assert config == load_config("demo")


SELECTS = {
    "name": "plus",
    "subsets": ["curated"],
    "init": "curated",
    "noisy_selection": {},
    "cycles": [{"epochs": 1, "lr": 1e-3}],
}


def test_a_selection_stage_takes_the_defaults() -> None:
    plus = load_config("demo", {"stages.+": SELECTS}).stage("plus")
    assert plus.noisy_selection is not None and plus.noisy_selection.min_lwlrap == 0.5
    assert plus.noisy_selection.max_per_label is None and not plus.noisy_selection.relabel


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"init": None}, "selects noisy clips .* no init"),
        ({"subsets": ["curated", "noisy"]}, "must not include 'noisy'"),
        ({"noisy_selection": {"min_lwlrap": 1.5}}, "less than or equal to 1"),
        ({"noisy_selection": {"max_per_label": 0}}, "greater than or equal to 1"),
        ({"noisy_selection": {"relabel_min_prob": 0}}, "greater than 0"),
        ({"noisy_selection": {"threshold": 0.5}}, "threshold: no such setting"),
        ({"bootstrap_beta": 0}, "greater than 0"),
        ({"loss": "focal"}, "soft_bootstrap"),
    ],
    ids=["no-init", "noisy-subset", "lwlrap", "cap", "prob", "unknown", "beta", "loss"],
)
def test_a_bad_selection_or_loss_is_refused_naming_the_problem(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config("demo", {"stages.+": {**SELECTS, **change}})


def test_selecting_with_models_that_trained_on_selected_clips_is_refused() -> None:
    tree = load_config("demo", {"stages.+": SELECTS}).model_dump(mode="json")
    again = {**SELECTS, "name": "again", "init": "plus"}
    with pytest.raises(ValueError, match="already trained on selected noisy clips.*'plus'"):
        TrainConfig.model_validate({**tree, "stages": [*tree["stages"], again]})
    # A stage without a selection may start from one that had it.
    later = {**again, "noisy_selection": None}
    config = TrainConfig.model_validate({**tree, "stages": [*tree["stages"], later]})
    assert config.stage("again").init == "plus"
