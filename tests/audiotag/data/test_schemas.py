from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from audiotag.data.schemas import (
    LABEL_TABLE_KEYS,
    label_table,
    label_table_schema,
    write_label_table,
)

VOCAB = ("Bark", "Run", "Purr")


def test_label_table_is_written_in_its_schema(tmp_path: Path) -> None:
    probs = np.random.default_rng(0).random((4, 3))
    frame = label_table([f"{i}.wav" for i in range(4)], 2, probs, VOCAB)
    assert list(frame.columns) == [*LABEL_TABLE_KEYS, *VOCAB]
    path = write_label_table(frame, VOCAB, tmp_path / "valid.parquet")
    assert pq.read_schema(path).remove_metadata().equals(label_table_schema(VOCAB))
    back = pd.read_parquet(path)
    assert back.fname.tolist() == frame.fname.tolist() and (back.fold == 2).all()
    np.testing.assert_array_equal(back[list(VOCAB)].to_numpy(), probs.astype(np.float32))


def test_oof_is_the_folds_tables_concatenated(tmp_path: Path) -> None:
    for k in range(3):
        part = label_table([f"{k}.wav"], k, np.full((1, 3), k / 10), VOCAB)
        write_label_table(part, VOCAB, tmp_path / f"valid-{k}.parquet")
    parts = [pd.read_parquet(tmp_path / f"valid-{k}.parquet") for k in range(3)]
    path = write_label_table(pd.concat(parts, ignore_index=True), VOCAB, tmp_path / "oof.parquet")
    assert pq.read_schema(path).remove_metadata().equals(label_table_schema(VOCAB))
    assert pd.read_parquet(path).fold.tolist() == [0, 1, 2]


def test_a_table_with_other_columns_is_refused(tmp_path: Path) -> None:
    frame = label_table(["a.wav"], 0, np.zeros((1, 3)), VOCAB)
    with pytest.raises(ValueError, match="expected"):
        write_label_table(frame[["fname", "fold", "Run", "Bark", "Purr"]], VOCAB, tmp_path / "x")


def test_label_table_takes_a_fold_per_row() -> None:
    frame = label_table(["a.wav", "b.wav"], [0, 3], np.zeros((2, 3)), VOCAB)
    assert frame.fold.tolist() == [0, 3]


@pytest.mark.parametrize(
    ("fnames", "fold", "shape", "match"),
    [
        (["a.wav"], 0, (2, 3), r"probs has shape \(2, 3\), expected \(1, 3\)"),
        (["a.wav", "b.wav"], [0], (2, 3), "1 folds given for 2 files"),
    ],
)
def test_label_table_refuses_mismatched_shapes(
    fnames: list[str], fold: int | list[int], shape: tuple[int, int], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        label_table(fnames, fold, np.zeros(shape), VOCAB)


def test_label_columns_must_not_clash() -> None:
    with pytest.raises(ValueError, match=r"\['fold'\]"):
        label_table_schema(("Bark", "fold"))
    with pytest.raises(ValueError, match=r"\['Bark'\]"):
        label_table_schema(("Bark", "Bark"))
