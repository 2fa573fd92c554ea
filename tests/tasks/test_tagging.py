"""tasks/tagging.py: a folder tagged with a model package, its CSV and its table artifact."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from tasks.tagging import tag_folder
from tests.helpers.artifacts import read_artifact
from tests.helpers.audio import write_tone
from tests.helpers.packages import VOCAB, write_tiny_package


@flow
def tag(folder: str, model: str) -> str:
    return tag_folder(folder, model, top_k=2, threshold=None, output_name="tags.csv")


@pytest.fixture(scope="module")
def tagged(prefect_server: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A folder of two tones (one in a subfolder) and a broken WAV, tagged in a flow run."""
    tmp = tmp_path_factory.mktemp("tagging")
    package = write_tiny_package(tmp / "package", seed=0)
    folder = tmp / "clips"
    write_tone(folder / "a.wav", freq=440.0)
    write_tone(folder / "more" / "b.wav", freq=3000.0, seconds=2.0)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    (folder / "notes.txt").write_text("not audio either")
    state = tag(str(folder), str(package), return_state=True)
    with (folder / "tags.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {
        "folder": folder,
        "out": state.result(),
        "rows": {r["path"]: r for r in rows},
        "flow_run_id": state.state_details.flow_run_id,
    }


def test_the_tags_are_written_beside_the_clips(tagged: dict[str, Any]) -> None:
    assert Path(tagged["out"]) == tagged["folder"] / "tags.csv"
    # Paths relative to the folder, audio files only, subfolders included.
    assert set(tagged["rows"]) == {"a.wav", "broken.wav", str(Path("more") / "b.wav")}


def test_each_readable_clip_gets_its_top_k_tags(tagged: dict[str, Any]) -> None:
    for name in ("a.wav", str(Path("more") / "b.wav")):
        row = tagged["rows"][name]
        assert row["error"] == ""
        pairs = [part.split(":") for part in row["tags"].split(";")]
        assert len(pairs) == 2
        assert {label for label, _ in pairs} <= set(VOCAB)
        assert all(0.0 <= float(p) <= 1.0 for _, p in pairs)


def test_an_unreadable_clip_gets_an_error_not_tags(tagged: dict[str, Any]) -> None:
    row = tagged["rows"]["broken.wav"]
    assert row["tags"] == ""
    assert row["error"]


def test_the_tags_are_a_table_artifact(tagged: dict[str, Any]) -> None:
    artifact = read_artifact(tagged["flow_run_id"], "tags")
    assert artifact.type == "table"
    rows = {r["file"]: r for r in json.loads(artifact.data)}
    assert set(rows) == {"a.wav", "b.wav", "broken.wav"}
    assert rows["broken.wav"]["error"] and not rows["broken.wav"]["tags"]
    assert len(rows["a.wav"]["tags"].split(";")) == 2
