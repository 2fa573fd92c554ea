"""The prepared dataset as later steps see it: its record, its rows, its folds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from audiotag.config import StageSettings, TrainConfig, settings_hash
from audiotag.features.store import FeatureStore, build_feature_store
from audiotag.steps.keys import feature_key
from audiotag.steps.workspace import Workspace
from audiotag.training.batches import Clips


@dataclass(frozen=True)
class DatasetInfo:
    """What later steps need to know of the prepared dataset."""

    data_dir: str
    fingerprint: str
    vocab: tuple[str, ...]
    kept: int
    rejected: int
    counts: tuple[tuple[str, int], ...] = ()  # kept files per subset

    def count(self, subset: str) -> int:
        return dict(self.counts).get(subset, 0)

    @property
    def model_key(self) -> str:
        """What of the data a model depends on: the kept files with their labels (the
        fingerprint) and the vocabulary, its output columns (a new column in
        sample_submission.csv changes the vocabulary, not the fingerprint)."""
        return settings_hash(self.fingerprint, *self.vocab)


def kept_rows(ws: Workspace, subset: str | None = None) -> list[dict]:
    """The kept files' metadata rows, of one subset or all."""
    rows = pq.read_table(ws.kept).to_pylist()
    return [r for r in rows if subset is None or r["subset"] == subset]


def targets(rows: list[dict], vocab: tuple[str, ...]) -> np.ndarray:
    """Multi-hot ``(len(rows), len(vocab))`` of the rows' labels; others are ignored."""
    col = {label: i for i, label in enumerate(vocab)}
    out = np.zeros((len(rows), len(vocab)), dtype=bool)
    for i, row in enumerate(rows):
        for label in row["labels"]:
            if label in col:
                out[i, col[label]] = True
    return out


def to_clips(store: FeatureStore, rows: list[dict], vocab: tuple[str, ...]) -> Clips:
    """Rows -> Clips with multi-hot targets; labels outside ``vocab`` are ignored."""
    offsets, frames = store.locate([(r["subset"], r["fname"]) for r in rows])
    return Clips(offsets, frames, targets(rows, vocab).astype(np.float32))


def split_fold(ws: Workspace, subset: str, fold: int) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows) of ``subset`` for ``fold``."""
    folds = pq.read_table(ws.folds).to_pandas()
    held = folds[(folds.subset == subset) & (folds.fold == fold)]
    held_names = set(held.fname)
    in_folds = set(folds[folds.subset == subset].fname)
    rows = [r for r in kept_rows(ws, subset) if r["fname"] in in_folds]
    return (
        [r for r in rows if r["fname"] not in held_names],
        [r for r in rows if r["fname"] in held_names],
    )


def stage_rows(
    ws: Workspace, stage: StageSettings, fold: int, selection: Path | None = None
) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows) of ``stage`` for ``fold``.

    It trains on fold ``fold``'s training part of each of its subsets and is scored on
    the held-out part of the first, so no clip it is scored on is ever trained on. With
    a ``selection`` file (`audiotag.steps.selection.select_noisy`), it also trains on
    every kept noisy clip, with its ``new_labels``.
    """
    first, *others = stage.subsets
    train, valid = split_fold(ws, first, fold)
    for subset in others:
        train += split_fold(ws, subset, fold)[0]
    if selection is not None:
        train += selected_rows(ws, selection)
    return train, valid


def selected_rows(ws: Workspace, selection: Path) -> list[dict]:
    """The kept noisy clips of a selection file, their labels replaced by ``new_labels``."""
    table = pq.read_table(selection, columns=["fname", "new_labels", "kept"]).to_pylist()
    labels = {r["fname"]: list(r["new_labels"]) for r in table if r["kept"]}
    return [
        {**r, "labels": labels[r["fname"]]} for r in kept_rows(ws, "noisy") if r["fname"] in labels
    ]


def build_features(ws: Workspace, data_dir: Path, config: TrainConfig, fingerprint: str) -> Path:
    """The feature store of every kept file, cached by fingerprint and mel settings."""
    return build_feature_store(
        kept_rows(ws), data_dir, config.mel, ws.features(feature_key(config, fingerprint))
    )
