"""The raw dataset layout (SPEC §4) and the facts read from it: labels and vocabulary."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from audiotag.errors import UsageError
from audiotag.storage import FORMULA_STARTS

SUBSETS: tuple[str, ...] = ("curated", "noisy", "test")
TRAIN_SUBSETS: tuple[str, ...] = ("noisy", "curated")
AUDIO_DIRS: dict[str, str] = {
    "curated": "train_curated",
    "noisy": "train_noisy",
    "test": "test",
}
LABEL_CSVS: dict[str, str] = {
    "curated": "train_curated.csv",
    "noisy": "train_noisy.csv",
    "test": "test_labels.csv",
}
SAMPLE_SUBMISSION = "sample_submission.csv"
# The columns each CSV must have; a label CSV without ``labels`` would train on nothing.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    LABEL_CSVS["curated"]: ("fname", "labels"),
    LABEL_CSVS["noisy"]: ("fname", "labels"),
    LABEL_CSVS["test"]: ("fname", "labels"),
    SAMPLE_SUBMISSION: ("fname",),
}

COMPETITION = "freesound-audio-tagging-2019"

# Kaggle's list of corrupt or empty curated files (competition data page).
KAGGLE_CORRUPT_FILES: tuple[str, ...] = (
    "f76181c4.wav",
    "77b925c2.wav",
    "6a1f682a.wav",
    "c7db12aa.wav",
    "7752cc8a.wav",
    "1d44b0bd.wav",
)


class LayoutError(ValueError, UsageError):
    """The dataset directory does not have the FAT2019 layout."""


@dataclass(frozen=True)
class LabelledFile:
    fname: str
    subset: str
    labels: tuple[str, ...]


def split_labels(text: str | None) -> tuple[str, ...]:
    """``'Bark,Run'`` -> ``('Bark', 'Run')``; blanks dropped."""
    if not text:
        return ()
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _read_csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of one of the layout's CSVs; LayoutError when a required column is missing."""
    required = REQUIRED_COLUMNS.get(path.name, ("fname",))
    # utf-8-sig strips a BOM; csv handles CRLF line ends.
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            columns = ", ".join(reader.fieldnames or []) or "none"
            raise LayoutError(
                f"{path}: no {' or '.join(repr(c) for c in missing)} column (columns: {columns})"
            )
        return list(reader)


def read_subset(data_dir: Path, subset: str) -> list[LabelledFile]:
    """The files of one subset in CSV order (test: sample_submission order).

    Test labels come from ``test_labels.csv`` when it exists.
    """
    if subset == "test":
        sub = data_dir / SAMPLE_SUBMISSION
        labels_csv = data_dir / LABEL_CSVS["test"]
        labels = {}
        if labels_csv.exists():
            labels = {r["fname"]: split_labels(r.get("labels")) for r in _read_csv_rows(labels_csv)}
        if sub.exists():
            names = [r["fname"] for r in _read_csv_rows(sub)]
        else:
            names = list(labels)
        return [LabelledFile(n, "test", labels.get(n, ())) for n in names]
    path = data_dir / LABEL_CSVS[subset]
    if not path.exists():
        return []
    return [
        LabelledFile(r["fname"], subset, split_labels(r.get("labels")))
        for r in _read_csv_rows(path)
    ]


def read_vocabulary(data_dir: Path) -> tuple[str, ...]:
    """The label vocabulary, in submission column order.

    From ``sample_submission.csv``'s columns when present, else the sorted union
    of the training CSVs' labels; never hard-coded.
    """
    sub = data_dir / SAMPLE_SUBMISSION
    if sub.exists():
        with sub.open(newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
        vocab = tuple(c for c in header if c != "fname")
        if vocab:
            return vocab
    found: set[str] = set()
    for subset in TRAIN_SUBSETS:
        for item in read_subset(data_dir, subset):
            found.update(item.labels)
    if not found:
        raise LayoutError(f"{data_dir}: no labels in {SAMPLE_SUBMISSION} or the training CSVs")
    return tuple(sorted(found))


def outside_vocabulary(rows: Iterable[dict], vocab: Sequence[str]) -> dict[str, list[str]]:
    """Subset -> the names of its labelled clips none of whose labels is in ``vocab``.

    Such a training clip trains as a clip of no class; such a test clip cannot be scored.
    ``rows`` have ``subset``, ``fname`` and ``labels`` (metadata or kept rows).
    """
    known = set(vocab)
    out: dict[str, list[str]] = {}
    for row in rows:
        if row["labels"] and not known & set(row["labels"]):
            out.setdefault(row["subset"], []).append(row["fname"])
    return out


def formula_labels(vocab: Sequence[str]) -> list[str]:
    """The labels a spreadsheet would run as a formula; CSV outputs prefix them with '."""
    return [label for label in vocab if label.startswith(FORMULA_STARTS)]


def check_layout(data_dir: Path) -> None:
    """Raises LayoutError naming what is missing."""
    if not data_dir.is_dir():
        raise LayoutError(f"{data_dir}: not a directory")
    missing = [LABEL_CSVS[s] for s in ("curated",) if not (data_dir / LABEL_CSVS[s]).exists()]
    missing += [AUDIO_DIRS[s] for s in ("curated",) if not (data_dir / AUDIO_DIRS[s]).is_dir()]
    if missing:
        raise LayoutError(f"{data_dir}: missing {', '.join(missing)} (FAT2019 layout expected)")
