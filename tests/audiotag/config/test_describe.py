"""audiotag/config/describe.py: every field by the key --set takes, and validation
errors as one line per problem."""

import json

import pytest

from audiotag.config import PRESETS, load_config
from audiotag.config.describe import ConfigError, describe_fields


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_field_is_listed_by_a_key_that_sets_it_to_its_shown_value(preset: str) -> None:
    config = load_config(preset)
    rows = describe_fields(config)
    keys = [r.key for r in rows]
    assert len(keys) == len(set(keys))
    assert {"seed", "mel.n_mels", "model.arch", "eval.tta"} <= set(keys)
    for stage in config.stages:  # a stage's fields under its name, its cycles by index
        assert f"{stage.name}.cycles.0.epochs" in keys and f"{stage.name}.batch_size" in keys
    for r in rows:
        assert load_config(preset, {r.key: json.loads(r.value)}) == config, r.key
        assert r.description, f"{r.key} has no description"


def test_bounds_and_choices_are_shown_with_the_description() -> None:
    rows = {r.key: r for r in describe_fields(load_config("demo"))}
    assert rows["model.widen"].description.endswith("[> 0, <= 4]")
    assert '"xresnet18" | "xresnet34" | "xresnet50"' in rows["model.arch"].description
    assert rows["curated.subsets"].value == '["curated"]'


@pytest.mark.parametrize(
    ("overrides", "lines"),
    [
        # pydantic adds "cycles: at least 1 item" for the same cause: not repeated
        ({"curated.cycles.0.epochs": -1}, ["curated.cycles.0.epochs=-1: should be greater than 0"]),
        (
            {"model.arch": "xresnet99", "mel.n_mels": 0},
            [
                "mel.n_mels=0: should be greater than 0",
                "model.arch=\"xresnet99\": should be 'xresnet18', 'xresnet34' or 'xresnet50'",
            ],
        ),
        ({"noisy.batch_size": "many"}, ['noisy.batch_size="many": should be a valid integer']),
        ({"model.depth": 3}, ["model.depth: no such setting (`audiotag config show` lists them)"]),
        ({"mel.f_max": 30000}, ["mel: f_max 30000.0 is above Nyquist (22050.0)"]),
    ],
    ids=["child-only", "two-fields", "type", "unknown", "section"],
)
def test_a_validation_error_is_one_line_per_problem_naming_key_value_and_range(
    overrides: dict, lines: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("demo", overrides)
    problems = caught.value.problems
    assert len(problems) == len(lines)
    for problem, line in zip(sorted(problems), sorted(lines), strict=True):
        assert problem.startswith(line), problem
    assert not any("pydantic" in p or "http" in p or "\n" in p for p in problems)


def test_docs_config_md_is_current() -> None:
    """The override keys the form's help links to: `make config-doc` rewrites it."""
    from pathlib import Path

    from audiotag.config import PRESETS, load_config
    from audiotag.config.describe import describe_fields
    from audiotag.config.doc import CONFIG_DOC, render_config_doc

    doc = Path(__file__).resolve().parents[3] / CONFIG_DOC
    assert doc.read_text() == render_config_doc(), "docs/config.md is stale: make config-doc"
    for preset in PRESETS:  # every key of every preset is listed
        for row in describe_fields(load_config(preset)):
            assert f"| `{row.key}` |" in doc.read_text()
