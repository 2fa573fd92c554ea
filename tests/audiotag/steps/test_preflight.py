"""audiotag/steps/preflight.py: each cause a run cannot survive, found from the CSVs and
the work dir alone, before any work, in one line that names it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from audiotag.config import load_config
from audiotag.data.layout import LayoutError
from audiotag.errors import UsageError
from audiotag.steps.preflight import MIN_FREE_ENV, check_dataset, check_source, check_workdir
from audiotag.steps.workspace import Workspace
from audiotag.storage import write_problem
from tests.helpers.layouts import curated_clips, write_csv, write_layout
from tests.helpers.workdirs import read_only_dir

VOCAB = ("Bark", "Meow")


def test_a_read_only_work_dir_is_named_read_only(tmp_path: Path) -> None:
    with read_only_dir(tmp_path / "ro") as ro:
        assert "read-only" in write_problem(ro)
        with pytest.raises(UsageError, match=r"work dir .*ro is read-only"):
            check_workdir(Workspace.at(ro))
        with pytest.raises(UsageError, match="read-only"):  # a work dir to be made inside it
            check_workdir(Workspace.at(ro / "work"))


def test_a_work_dir_that_is_a_file_or_under_one_is_refused(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UsageError, match="is a file, not a directory"):
        check_workdir(Workspace.at(tmp_path / "afile"))
    with pytest.raises(UsageError, match="a part of its path is a file"):
        check_workdir(Workspace.at(tmp_path / "afile" / "work"))


def test_a_disk_with_less_free_space_than_a_run_needs_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = Workspace.at(tmp_path / "w")
    check_workdir(ws, need=1)  # made, writable, room
    assert ws.root.is_dir() and not list(ws.root.iterdir())  # the write probe is gone
    monkeypatch.setenv(MIN_FREE_ENV, str(10**12))  # a threshold above any free space
    with pytest.raises(UsageError, match=rf"MB free, a run needs at least .*{MIN_FREE_ENV}"):
        check_workdir(ws)


def test_a_missing_source_or_one_that_is_no_dataset_is_named(tmp_path: Path) -> None:
    config = load_config("debug")
    with pytest.raises(LayoutError, match="nowhere: no such file or directory"):
        check_source(str(tmp_path / "nowhere"), config)
    (tmp_path / "notes.txt").write_text("not a zip")
    with pytest.raises(LayoutError, match="neither a directory nor a zip"):
        check_source(str(tmp_path / "notes.txt"), config)
    with pytest.raises(LayoutError, match="missing train_curated.csv"):
        check_source(str(tmp_path), config)
    check_source("demo", config)  # checked once it is in the work dir


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a folder whatever its mode")
def test_an_unreadable_source_is_named(tmp_path: Path) -> None:
    data = write_layout(tmp_path / "d", VOCAB, {"curated": curated_clips(4, VOCAB)}, audio=False)
    data.chmod(0o000)
    try:
        with pytest.raises(UsageError, match="cannot be read"):
            check_source(str(data), load_config("debug"))
    finally:
        data.chmod(0o755)


def test_a_label_csv_without_its_labels_column_is_named(tmp_path: Path) -> None:
    data = write_layout(tmp_path, VOCAB, {"curated": curated_clips(4, VOCAB)}, audio=False)
    write_csv(data / "train_noisy.csv", ["fname", "label"], [["n0.wav", "Bark"]])
    with pytest.raises(LayoutError, match=r"train_noisy.csv: no 'labels' column \(columns: fname"):
        check_dataset(data, load_config("debug"))


def test_a_subset_whose_every_label_is_outside_the_vocabulary_is_refused(
    tmp_path: Path,
) -> None:
    clips = {"curated": curated_clips(4, VOCAB), "noisy": curated_clips(4, ("Moo",), "n")}
    data = write_layout(tmp_path, VOCAB, clips, audio=False)
    with pytest.raises(UsageError, match=r"train_noisy.csv: every clip's labels are outside"):
        check_dataset(data, load_config("debug"))
    # A config without a noisy stage does not read the noisy clips.
    curated_only = [{"name": "curated", "subsets": ["curated"], "cycles": [{"epochs": 1, "lr": 1}]}]
    check_dataset(data, load_config("debug", {"stages": curated_only, "folds.n_folds": 2}))


def test_more_folds_than_labelled_clips_is_refused_with_what_to_set(tmp_path: Path) -> None:
    data = write_layout(tmp_path, VOCAB, {"curated": curated_clips(3, VOCAB)}, audio=False)
    with pytest.raises(UsageError, match=r"3 labelled clips cannot make folds.n_folds=5 .*=3"):
        check_dataset(data, load_config("debug"))
    check_dataset(data, load_config("debug", {"folds.n_folds": 3}))
