"""flows/cli.py ``audiotag tag``: what it selects by default, its output formats (one set of
fields, strict JSON) and its exit status, on a tiny untrained package."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from flows.cli import main
from tests.helpers.audio import write_tone
from tests.helpers.flows import strict_json
from tests.helpers.packages import VOCAB, write_tiny_package


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bark kept on any file (threshold 0), Run on none (1.0)."""
    root = tmp_path_factory.mktemp("package")
    return write_tiny_package(root, seed=0, thresholds={"Bark": 0.0, "Run": 1.0})


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("clips")
    return [write_tone(root / f"{i}.wav", freq=300.0 * (i + 1), seconds=0.5) for i in range(2)]


def _tag(args: list[str], out: Path) -> tuple[int, str]:
    status = main(["tag", *args, "--output", str(out)])
    return status, out.read_text(encoding="utf-8")


def test_by_default_each_label_above_its_own_threshold_in_the_fields_the_server_gives(
    package: Path, clips: list[Path], tmp_path: Path
) -> None:
    status, text = _tag(
        [*map(str, clips), "--model", str(package), "--format", "json"], tmp_path / "t.json"
    )
    rows = strict_json(text)
    assert status == 0 and [r["path"] for r in rows] == [str(c) for c in clips]
    for row in rows:
        assert list(row) == ["path", "tags", "best", "error"]
        assert [t["label"] for t in row["tags"]] == ["Bark"] and row["error"] is None
        assert row["best"]["label"] in VOCAB
    _, top1 = _tag(
        [str(clips[0]), "--model", str(package), "--top-k", "1", "--format", "jsonl"],
        tmp_path / "k.jsonl",
    )
    _, every = _tag(
        [str(clips[0]), "--model", str(package), "--all", "--format", "jsonl"], tmp_path / "a.jsonl"
    )
    _, at = _tag(
        [str(clips[0]), "--model", str(package), "--threshold", "1", "--format", "jsonl"],
        tmp_path / "p.jsonl",
    )
    assert len(strict_json(top1)["tags"]) == 1 and len(strict_json(every)["tags"]) == 2
    assert strict_json(at)["tags"] == [] and strict_json(at)["best"] is not None


def test_some_files_failing_exit_1_every_row_written_and_the_count_said(
    package: Path, clips: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    missing = tmp_path / "gone.wav"
    args = [str(clips[0]), str(missing), "--model", str(package), "--segments", "--format", "csv"]
    status, text = _tag(args, tmp_path / "t.csv")
    assert status == 1
    assert "1 of 2 files could not be tagged" in capsys.readouterr().err
    rows = list(csv.DictReader(text.splitlines()))
    assert list(rows[0]) == [
        "path",
        "kind",
        "rank",
        "label",
        "probability",
        "start",
        "end",
        "error",
    ]
    kinds = [(r["path"], r["kind"]) for r in rows]
    assert (str(clips[0]), "tag") in kinds and (str(clips[0]), "best") in kinds
    assert (str(clips[0]), "segment") in kinds and (str(missing), "error") in kinds
    segment = next(r for r in rows if r["kind"] == "segment")
    assert segment["label"] == "Bark" and 0 <= float(segment["start"]) < float(segment["end"])


def test_an_empty_folder_or_a_bad_option_is_a_usage_error(
    package: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no audio here")
    assert main(["tag", str(empty), "--model", str(package)]) == 2
    assert f"{empty}: no audio file in this folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["tag", str(empty), "--model", str(package), "--threshold", "1.5"])
    assert stop.value.code == 2
    assert "must be a probability in [0, 1]" in capsys.readouterr().err
