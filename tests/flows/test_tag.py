"""flows/tag.py: the tag-audio flow's form refuses bad values before a run starts.

Tagging itself is `tests/tasks/test_tagging.py` (the task, on a tiny package) and
`tests/flows/test_train.py::test_tag_audio_flow_writes_tags_beside_the_folder` (this
flow, on the models a flow run trained).
"""

from __future__ import annotations

import pytest
from prefect.exceptions import ParameterTypeError

from flows.tag import tag_audio_flow


def test_a_folder_and_a_model_are_enough_and_the_rest_has_defaults() -> None:
    assert tag_audio_flow.validate_parameters({"folder": "inbox", "model": "work"}) == {
        "folder": "inbox",
        "model": "work",
        "top_k": 3,
        "threshold": None,
        "output_name": "audiotag-tags.csv",
    }


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"folder": ""}, "folder"),
        ({"model": ""}, "model"),
        ({"top_k": 0}, "top_k"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": -0.1}, "threshold"),
        ({"output_name": ""}, "output_name"),
    ],
    ids=["empty-folder", "empty-model", "top-k-0", "threshold-above-1", "negative", "no-name"],
)
def test_a_bad_value_is_refused_naming_its_field(changes: dict, field: str) -> None:
    with pytest.raises(ParameterTypeError, match=rf"{field}:"):
        tag_audio_flow.validate_parameters({"folder": "inbox", "model": "work", **changes})


def test_the_ui_form_shows_the_bounds() -> None:
    fields = tag_audio_flow.parameters.model_dump()["properties"]
    assert fields["top_k"]["minimum"] == 1
    assert {"folder", "model"} <= set(tag_audio_flow.parameters.required)
