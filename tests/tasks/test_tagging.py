"""tasks/tagging.py, wired by flows/tag.py: a folder tagged in chunks, each kept, merged.

The flow runs here, on this package's Prefect server, with a tiny package: a chunk
made to fail, then the re-run that tags only that chunk; the merged CSV and its
table artifact; a registered model by its ``models:/`` name.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from audiotag.steps.workspace import TagFolder
from audiotag.tracking.registry import register_ensemble
from audiotag.tracking.runs import start_parent
from audiotag.tracking.store import TrackingUnavailableError
from flows.tag import tag_audio_flow
from tasks.tagging import FAIL_CHUNK_ENV, ChunksFailed, NoAudioError
from tests.helpers.artifacts import read_artifact
from tests.helpers.audio import write_tone
from tests.helpers.flows import task_states
from tests.helpers.packages import VOCAB, write_tiny_package

NAMES = ["a.wav", "broken.wav", "c.wav", "d.wav", "more/b.wav", "more/e.wav"]


def _rows(path: Path) -> dict[str, dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return {r["path"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def tagged(prefect_server: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Five tones (two in a subfolder) and a broken WAV in chunks of two; chunk 2 made to
    fail in the first run, the second run as a user re-runs it."""
    tmp = tmp_path_factory.mktemp("tagging")
    package = write_tiny_package(tmp / "package", seed=0)
    folder = tmp / "clips"
    for i, name in enumerate(n for n in NAMES if n != "broken.wav"):
        write_tone(folder / name, freq=300.0 * (i + 1), seconds=1.0 + 0.25 * i)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    (folder / "notes.txt").write_text("not audio either")
    params = {"folder": str(folder), "model": str(package), "top_k": 2}
    params |= {"output_name": "tags.csv", "chunk_size": 2}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(FAIL_CHUNK_ENV, "2")
        failed = tag_audio_flow(**params, return_state=True)
    wrote_after_failure = (folder / "tags.csv").exists()
    again = tag_audio_flow(**params, return_state=True)
    return {
        "folder": folder,
        "package": package,
        "failed": failed,
        "wrote_after_failure": wrote_after_failure,
        "out": again.result(),
        "rows": _rows(folder / "tags.csv"),
        "first": task_states(failed.state_details.flow_run_id, "tag-chunk-"),
        "second": task_states(again.state_details.flow_run_id, "tag-chunk-"),
        "flow_run_id": again.state_details.flow_run_id,
    }


def test_a_failed_chunk_fails_the_run_and_writes_no_partial_results(tagged: dict) -> None:
    assert tagged["failed"].is_failed()
    with pytest.raises(ChunksFailed, match=r"1 of 3 chunks failed \(numbers \[2\]\)"):
        tagged["failed"].result()
    assert tagged["first"] == {
        "tag-chunk-1": "Completed",
        "tag-chunk-2": "Failed",
        "tag-chunk-3": "Completed",
    }
    assert not tagged["wrote_after_failure"]


def test_the_re_run_tags_only_the_chunk_that_did_not_finish(tagged: dict) -> None:
    assert tagged["second"] == {
        "tag-chunk-1": "Cached",
        "tag-chunk-2": "Completed",
        "tag-chunk-3": "Cached",
    }


def test_the_merged_tags_are_written_beside_the_clips_in_order(tagged: dict) -> None:
    assert Path(tagged["out"]) == tagged["folder"] / "tags.csv"
    # Paths relative to the folder, audio files only, subfolders included, the flow's
    # own state left out; one row per file although the chunks ran in two flow runs.
    assert list(tagged["rows"]) == [str(Path(n)) for n in NAMES]
    assert (tagged["folder"] / ".audiotag-tagging").is_dir()


def test_each_readable_clip_gets_its_top_k_tags(tagged: dict) -> None:
    for name in NAMES:
        row = tagged["rows"][str(Path(name))]
        if name == "broken.wav":
            assert row["tags"] == "" and row["error"]
            continue
        assert row["error"] == ""
        pairs = [part.split(":") for part in row["tags"].split(";")]
        assert len(pairs) == 2
        assert {label for label, _ in pairs} <= set(VOCAB)
        assert all(0.0 <= float(p) <= 1.0 for _, p in pairs)


def test_the_tags_are_a_table_artifact(tagged: dict) -> None:
    artifact = read_artifact(tagged["flow_run_id"], "tags")
    assert artifact.type == "table"
    rows = {r["file"]: r for r in json.loads(artifact.data)}
    assert set(rows) == {Path(n).name for n in NAMES}
    assert rows["broken.wav"]["error"] and not rows["broken.wav"]["tags"]
    assert len(rows["a.wav"]["tags"].split(";")) == 2


def test_a_changed_file_tags_its_chunk_again(tagged: dict, tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("a.wav", "c.wav", "d.wav"):
        (folder / name).write_bytes((tagged["folder"] / name).read_bytes())
    params = {"folder": str(folder), "model": str(tagged["package"]), "chunk_size": 2}
    tag_audio_flow(**params)
    write_tone(folder / "d.wav", freq=5000.0)  # chunk 2's only file, rewritten
    state = tag_audio_flow(**params, return_state=True)
    assert task_states(state.state_details.flow_run_id, "tag-chunk-") == {
        "tag-chunk-1": "Cached",
        "tag-chunk-2": "Completed",
    }


def test_a_folder_without_audio_is_an_error(prefect_server: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no audio")
    state = tag_audio_flow(folder=str(tmp_path), model="unused", return_state=True)
    assert state.is_failed()
    with pytest.raises(NoAudioError, match="no audio files to tag"):
        state.result()
    assert TagFolder.at(tmp_path).output("audiotag-tags.csv").exists() is False


def test_a_registered_model_tags_by_its_name_and_alias(
    tagged: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking = start_parent(tmp_path / "work", "run-1", {}, {})
    register_ensemble(tracking, tagged["package"], VOCAB, 0.5, name="inbox-model")
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "a.wav").write_bytes((tagged["folder"] / "a.wav").read_bytes())
    params = {"folder": str(folder), "model": "models:/inbox-model@champion", "top_k": 2}
    # Without a store to read it from, the run says what to set and makes no store.
    monkeypatch.chdir(tmp_path)
    state = tag_audio_flow(**params, return_state=True)
    with pytest.raises(TrackingUnavailableError, match="set MLFLOW_TRACKING_URI"):
        state.result()
    assert not (tmp_path / "mlflow.db").exists()
    out = tag_audio_flow(**params, tracking_uri=tracking.uri)
    assert _rows(Path(out))["a.wav"]["tags"] == tagged["rows"]["a.wav"]["tags"]
    # The alias was resolved to its version once, and that version's package downloaded.
    downloaded = list((folder / ".audiotag-tagging" / "models").rglob("audiotag-model.json"))
    assert len(downloaded) == 1
