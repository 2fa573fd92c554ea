"""flows/tag.py: the tag-audio flow's form refuses bad values before a run starts; and
`audiotag tag` given a registry name without a store says what to set.

Tagging itself is `tests/tasks/test_tagging.py` (the flow's chunks, on a tiny package) and
`tests/flows/test_train.py::test_tag_audio_flow_writes_tags_beside_the_folder` (this
flow, on the models a flow run trained).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.exceptions import ParameterTypeError

from flows.tag import tag_audio_flow
from tests.helpers.audio import write_tone


def test_a_folder_and_a_model_are_enough_and_the_rest_has_defaults() -> None:
    assert tag_audio_flow.validate_parameters({"folder": "inbox", "model": "work"}) == {
        "folder": "inbox",
        "model": "work",
        "top_k": None,  # each label's calibrated threshold, as `audiotag tag`
        "threshold": None,
        "output_name": "audiotag-tags.csv",
        "chunk_size": 200,
        "dask_address": None,
        "tracking_uri": None,
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
        ({"chunk_size": 0}, "chunk_size"),
    ],
    ids=[
        "empty-folder",
        "empty-model",
        "top-k-0",
        "threshold-above-1",
        "negative",
        "no-name",
        "chunk-0",
    ],
)
def test_a_bad_value_is_refused_naming_its_field(changes: dict, field: str) -> None:
    with pytest.raises(ParameterTypeError, match=rf"{field}:"):
        tag_audio_flow.validate_parameters({"folder": "inbox", "model": "work", **changes})


def test_the_ui_form_shows_the_bounds() -> None:
    fields = tag_audio_flow.parameters.model_dump()["properties"]
    top_k = fields["top_k"]  # int or empty (each label's threshold)
    assert [s.get("minimum") for s in top_k["anyOf"] if s.get("type") == "integer"] == [1]
    assert {"folder", "model"} <= set(tag_audio_flow.parameters.required)


@pytest.mark.parametrize("store", [None, "missing"], ids=["no-uri", "uri-of-no-store"])
def test_a_registry_name_without_its_store_is_one_line_saying_what_to_set(
    store: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from flows.cli import main

    monkeypatch.chdir(tmp_path)
    if store is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'work' / 'mlflow.db'}")
        (tmp_path / "work").mkdir()
    clip = write_tone(tmp_path / "a.wav")
    assert main(["tag", str(clip), "--model", "models:/audiotag@champion"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "MLFLOW_TRACKING_URI" in err and "Traceback" not in err
    # Nothing made a store: neither MLflow's default in the current folder nor the named one.
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["a.wav"] + (["work"] if store else [])
    )
