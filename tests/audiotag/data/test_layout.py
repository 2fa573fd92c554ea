from pathlib import Path

import pytest

from audiotag.data.layout import LayoutError, check_layout, read_subset, read_vocabulary


def test_vocabulary_from_the_training_csvs(drum_dataset: Path) -> None:
    assert read_vocabulary(drum_dataset) == (
        "Bass_drum",
        "Clapping",
        "Cymbal",
        "Hi-hat",
        "Snare_drum",
        "Tom-tom",
    )


def test_vocabulary_from_the_submission_columns(tmp_path: Path) -> None:
    (tmp_path / "sample_submission.csv").write_text("fname,Run,Bark\na.wav,0,0\n")
    assert read_vocabulary(tmp_path) == ("Run", "Bark")
    assert [f.fname for f in read_subset(tmp_path, "test")] == ["a.wav"]


def test_labels_split_on_commas_blanks_dropped(tmp_path: Path) -> None:
    (tmp_path / "train_curated.csv").write_text('fname,labels\na.wav,"Bark, Run,"\nb.wav,\n')
    files = read_subset(tmp_path, "curated")
    assert [f.labels for f in files] == [("Bark", "Run"), ()]


def test_missing_layout_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="train_curated.csv, train_curated"):
        check_layout(tmp_path)
