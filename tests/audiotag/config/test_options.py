"""The flow's form fields (TrainOptions) and how they change a preset."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from audiotag.config import TrainOptions, load_config


def _apply(preset: str, **options: int) -> object:
    base = load_config(preset)
    return load_config(preset, TrainOptions(**options).overrides(base))


def test_empty_options_keep_the_preset() -> None:
    for preset in ("demo", "reference"):
        assert _apply(preset) == load_config(preset)


@given(
    preset=st.sampled_from(["demo", "reference"]),
    stage=st.sampled_from(["noisy", "curated"]),
    epochs=st.integers(1, 200),
)
def test_stage_epochs_are_the_total_asked_for_and_keep_the_cycle_order(
    preset: str, stage: str, epochs: int
) -> None:
    config = _apply(preset, **{f"{stage}_epochs": epochs})
    base = load_config(preset).stage(stage).cycles
    cycles = config.stage(stage).cycles
    assert sum(c.epochs for c in cycles) == epochs
    assert all(c.epochs >= 1 for c in cycles)
    # learning rates and sizes of the kept cycles are the preset's, in order
    assert [(c.lr, c.size) for c in cycles] == [(c.lr, c.size) for c in base[: len(cycles)]]


def test_epochs_follow_the_presets_proportions() -> None:
    config = _apply("demo", noisy_epochs=12)  # the demo's noisy cycles are 4 + 2
    assert [c.epochs for c in config.stage("noisy").cycles] == [8, 4]


def test_every_field_reaches_the_config() -> None:
    config = _apply("demo", seed=7, n_folds=3, batch_size=8, tta=0)
    assert config.seed == 7
    assert config.folds.n_folds == 3
    assert config.stage("noisy").batch_size == config.stage("curated").batch_size == 8
    assert config.eval.tta == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"noisy_epochs": -1},
        {"curated_epochs": 0},
        {"n_folds": 1},
        {"batch_size": 0},
        {"tta": -2},
        {"seed": -1},
        {"epochs": 3},  # not a field: refused, not ignored
    ],
)
def test_bad_values_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        TrainOptions(**bad)


def test_the_registered_models_name_is_a_form_field_with_the_default_audiotag() -> None:
    assert load_config("demo").registry.model_name == "audiotag"
    assert _apply("demo", model_name="birds-2026").registry.model_name == "birds-2026"
    assert TrainOptions.model_json_schema()["properties"]["model_name"]["title"] == (
        "Registered model"
    )


@pytest.mark.parametrize("name", ["", "a/b", "x@champion", "it's", " lead"])
def test_a_model_name_a_models_uri_cannot_hold_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="model_name"):
        TrainOptions(model_name=name)
