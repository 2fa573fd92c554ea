"""The built-in baseline, per fold, on the same clips and folds as the network."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiotag.config import TrainConfig
from audiotag.data.layout import TRAIN_SUBSETS
from audiotag.features.store import FeatureStore
from audiotag.metrics import lwlrap, lwlrap_per_class
from audiotag.steps.dataset import DatasetInfo, kept_rows, split_fold, targets, to_clips
from audiotag.steps.workspace import Workspace
from audiotag.training.baseline import LinearBaseline, pooled_stats


@dataclass(frozen=True)
class BaselineResult:
    """The baseline's scores: out-of-fold on the last stage's scored subset, and test."""

    oof_lwlrap: float
    test_lwlrap: float | None
    fold_lwlrap: tuple[float, ...]
    oof_per_class: tuple[float, ...]
    test_per_class: tuple[float, ...] | None


def fit_baseline(
    ws: Workspace, info: DatasetInfo, store_dir: Path, config: TrainConfig
) -> BaselineResult:
    """Fits the linear baseline on every fold and scores it as the network is scored.

    Fold k trains on fold k's training part of every training subset with clips
    (curated and noisy), is scored on the held-out part of the last stage's first
    subset, and predicts the test clips; the test prediction is the folds' mean.
    """
    store = FeatureStore.open(store_dir)
    scored = config.last_stage.subsets[0]
    subsets = [s for s in TRAIN_SUBSETS if info.count(s)]
    test_rows = [r for r in kept_rows(ws, "test") if r["labels"]]
    test_x = pooled_stats(store.data, to_clips(store, test_rows, info.vocab))
    oof_truth, oof_probs, folds, test_probs = [], [], [], []
    for k in range(config.folds.n_folds):
        train = [r for s in subsets for r in split_fold(ws, s, k)[0]]
        valid = split_fold(ws, scored, k)[1]
        model = LinearBaseline(seed=config.seed).fit(
            pooled_stats(store.data, to_clips(store, train, info.vocab)),
            targets(train, info.vocab),
        )
        truth = targets(valid, info.vocab)
        probs = model.predict(pooled_stats(store.data, to_clips(store, valid, info.vocab)))
        folds.append(lwlrap(truth, probs) if truth.any() else float("nan"))
        oof_truth.append(truth)
        oof_probs.append(probs)
        if test_rows:
            test_probs.append(model.predict(test_x))
    truth, probs = np.concatenate(oof_truth), np.concatenate(oof_probs)
    oof = lwlrap(truth, probs) if truth.any() else math.nan  # undefined without true labels
    test_score = test_per_class = None
    if test_rows:
        test_truth, mean = targets(test_rows, info.vocab), np.mean(test_probs, axis=0)
        if test_truth.any():
            test_score = lwlrap(test_truth, mean)
            test_per_class = tuple(lwlrap_per_class(test_truth, mean)[0].round(5).tolist())
    return BaselineResult(
        oof,
        test_score,
        tuple(folds),
        tuple(lwlrap_per_class(truth, probs)[0].round(5).tolist()),
        test_per_class,
    )


def verdict(
    oof: float | None, test: float | None, baseline: BaselineResult, margin: float = 0.0
) -> str:
    """One sentence: does the network beat the baseline, on test when labelled, else OOF."""
    if test is not None and baseline.test_lwlrap is not None:
        what, ours, theirs = "test", test, baseline.test_lwlrap
    else:
        what, ours, theirs = "out-of-fold", oof, baseline.oof_lwlrap
    if ours is None or math.isnan(ours) or math.isnan(theirs):
        return "No lwlrap to compare the network with the linear baseline on (see not scored)."
    gap = ours - theirs
    if gap > margin:
        return (
            f"The network beats the linear baseline by {gap:+.4f} {what} lwlrap "
            f"({ours:.4f} vs {theirs:.4f})."
        )
    return (
        f"The network does NOT beat the linear baseline: {ours:.4f} vs {theirs:.4f} {what} "
        f"lwlrap ({gap:+.4f}). On this data the deep model was not worth training as set "
        "up; more clips, more epochs or another preset may change that."
    )


def per_class_rows(scores: dict) -> list[dict]:
    """Per-label rows of ``scores.json``: weight, OOF and test lwlrap, and the baseline's,
    weakest OOF first (a label without true labels in a set shows None there)."""
    weights = scores["class_weights"]
    base = scores.get("baseline") or {}

    def get(table: dict | None, label: str, present: bool) -> float | None:
        return None if table is None or not present else table[label]

    rows = []
    for label, weight in weights.items():
        has_test = scores.get("test_per_class") is not None
        rows.append(
            {
                "label": label,
                "weight": weight,
                "oof": get(scores["oof_per_class"], label, weight > 0),
                "test": get(scores.get("test_per_class"), label, has_test),
                "baseline oof": get(base.get("oof_per_class"), label, weight > 0),
                "baseline test": get(base.get("test_per_class"), label, has_test),
            }
        )
    return sorted(rows, key=lambda r: (r["oof"] is None, r["oof"] or 0.0))
