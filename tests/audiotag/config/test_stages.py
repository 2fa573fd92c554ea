"""Stages as data: a preset is an ordered list of stages, overridable by name or index."""

import pytest

from audiotag.config import PRESETS, load_config, parse_override


def test_the_reference_recipe_is_two_stages_curated_starting_from_noisy() -> None:
    config = load_config("reference")
    assert config.stage_names == ("noisy", "curated")
    noisy, curated = config.stages
    assert noisy.subsets == ("noisy",) and noisy.init is None
    assert curated.subsets == ("curated",) and curated.init == "noisy" and curated.mixup
    assert [c.epochs for c in noisy.cycles] == [10, 10] and curated.epochs == 50
    assert config.last_stage is curated


def test_a_stage_is_reached_by_its_name_or_its_index() -> None:
    by_name = load_config("demo", {"curated.batch_size": 8})
    by_index = load_config("demo", {"stages.1.batch_size": 8})
    assert by_name == by_index and by_name.stage("curated").batch_size == 8
    assert by_name.stage("noisy") == load_config("demo").stage("noisy")


def test_a_stage_is_appended_with_stages_plus() -> None:
    key, value = parse_override(
        'stages.+={"name": "plus", "subsets": ["curated", "noisy"], "init": "curated",'
        ' "cycles": [{"epochs": 2, "lr": 0.001}]}'
    )
    config = load_config("demo", {key: value})
    assert config.stage_names == ("noisy", "curated", "plus")
    assert config.lineage("plus") == (
        config.stage("plus"),
        config.stage("curated"),
        config.stage("noisy"),
    )


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


def test_every_preset_validates_and_debug_is_one_epoch_per_stage() -> None:
    for name in PRESETS:
        assert load_config(name).preset == name
    debug = load_config("debug")
    assert all(st.epochs == 1 and st.min_steps == 0 for st in debug.stages)


def test_an_unknown_stage_name_is_a_key_error_naming_the_stages() -> None:
    with pytest.raises(KeyError, match="noisy"):
        load_config("demo").stage("plus")


def test_a_model_file_written_before_stages_were_a_list_still_loads() -> None:
    from audiotag.config import TrainConfig

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


def test_a_selection_stage_takes_the_defaults_and_the_plus_presets_have_one() -> None:
    plus = load_config("demo", {"stages.+": SELECTS}).stage("plus")
    assert plus.noisy_selection is not None and plus.noisy_selection.min_lwlrap == 0.5
    assert plus.noisy_selection.max_per_label is None and not plus.noisy_selection.relabel
    for preset in ("plus", "demo_plus"):
        config = load_config(preset)
        assert config.stage_names == ("noisy", "curated", "plus")
        third = config.last_stage
        assert third.noisy_selection is not None and third.init == "curated" and third.mixup
        assert third.subsets == ("curated",)
        # The stages before it are the base preset's.
        base = load_config("reference" if preset == "plus" else "demo")
        assert config.stages[:2] == base.stages
    assert all(st.noisy_selection is None for st in load_config("reference").stages)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"init": None}, "selects noisy clips .* no init"),
        ({"subsets": ["curated", "noisy"]}, "must not include 'noisy'"),
        ({"noisy_selection": {"min_lwlrap": 1.5}}, "less than or equal to 1"),
        ({"noisy_selection": {"max_per_label": 0}}, "greater than or equal to 1"),
        ({"noisy_selection": {"relabel_min_prob": 0}}, "greater than 0"),
        ({"noisy_selection": {"threshold": 0.5}}, "Extra inputs"),
        ({"bootstrap_beta": 0}, "greater than 0"),
        ({"loss": "focal"}, "soft_bootstrap"),
    ],
    ids=["no-init", "noisy-subset", "lwlrap", "cap", "prob", "unknown", "beta", "loss"],
)
def test_a_bad_selection_or_loss_is_refused_naming_the_problem(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config("demo", {"stages.+": {**SELECTS, **change}})


def test_selecting_with_models_that_trained_on_selected_clips_is_refused() -> None:
    from audiotag.config import TrainConfig

    tree = load_config("demo", {"stages.+": SELECTS}).model_dump(mode="json")
    again = {**SELECTS, "name": "again", "init": "plus"}
    with pytest.raises(ValueError, match="already trained on selected noisy clips.*'plus'"):
        TrainConfig.model_validate({**tree, "stages": [*tree["stages"], again]})
    # A stage without a selection may start from one that had it.
    later = {**again, "noisy_selection": None}
    config = TrainConfig.model_validate({**tree, "stages": [*tree["stages"], later]})
    assert config.stage("again").init == "plus"
