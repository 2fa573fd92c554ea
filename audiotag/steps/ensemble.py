"""The ensemble step: the last stage's fold models on the test set, and the run's scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from audiotag.config import TrainConfig, settings_hash
from audiotag.data.layout import SAMPLE_SUBMISSION
from audiotag.data.schemas import write_label_table
from audiotag.features.store import FeatureStore
from audiotag.inference.predict import LoadedModel, ensemble
from audiotag.inference.tagging import write_package
from audiotag.inference.thresholds import (
    DEFAULT_THRESHOLD,
    Thresholds,
    calibrate_thresholds,
    f1_scores,
    threshold_scores,
    top_k_predicted,
)
from audiotag.metrics import lwlrap, lwlrap_per_class
from audiotag.steps.baseline import BaselineResult
from audiotag.steps.dataset import DatasetInfo, kept_rows, targets, to_clips
from audiotag.steps.workspace import Workspace
from audiotag.storage import file_digest, write_atomic, write_csv_table, write_json_atomic
from audiotag.training.batches import Clips
from audiotag.training.stage import StageResult


@dataclass(frozen=True)
class EnsembleResult:
    run_dir: str
    submission: str | None
    oof: str
    scores: str
    oof_lwlrap: float | None  # None: no held-out clip has a label in the vocabulary
    test_lwlrap: float | None
    fold_lwlrap: tuple[float, ...]
    model_dir: str = ""
    not_scored: tuple[str, ...] = ()  # the scores that could not be computed, and why
    oof_micro_f1: float | None = None  # tags at the calibrated per-class thresholds
    test_micro_f1: float | None = None


def predict_test(
    ws: Workspace,
    info: DatasetInfo,
    store_dir: Path,
    config: TrainConfig,
    models: list[StageResult],
    run_dir: Path,
    device: str = "cpu",
    baseline: BaselineResult | None = None,
) -> EnsembleResult:
    """TTA predictions of the last stage's fold models on the test set, averaged into
    the submission.

    Also gathers their out-of-fold predictions (each held-out clip of the stage's first
    subset, scored by the fold model that never trained on it), calibrates a threshold per
    label on them (`audiotag.inference.thresholds`; stored in the package), and writes
    ``scores.json`` with the per-class scores (lwlrap; precision, recall and F1 at the
    thresholds), and the baseline's beside them when given.

    What was done is kept: the submission and the model package are written before any
    score, and a score that cannot be computed (no held-out or test clip with a label in
    the vocabulary) is None, with the reason in ``scores.json``'s ``not_scored``.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    # Out-of-fold: every held-out clip scored by the model that never saw it.
    parts = [pd.read_parquet(Path(r.model_path).parent / "valid.parquet") for r in models]
    oof = pd.concat(parts, ignore_index=True)
    scored_subset = config.stage(models[0].stage).subsets[0]
    labels = {r["fname"]: r["labels"] for r in kept_rows(ws, scored_subset)}
    truth = targets([{"labels": labels[f]} for f in oof.fname], info.vocab)
    oof_probs = oof[list(info.vocab)].to_numpy()
    thresholds = calibrate_thresholds(truth, oof_probs, info.vocab)
    model_dir = write_package(
        [Path(r.model_path) for r in models], run_dir / "model", config.eval, thresholds
    )
    write_label_table(oof, info.vocab, run_dir / "oof.parquet")

    test = _test_predictions(ws, info, store_dir, config, models, run_dir, device, truth)
    submission, test_truth, test_probs, names, by_name = test
    not_scored: list[str] = []
    oof_score, per_class, weights = _score(truth, oof_probs)
    if oof_score is None:
        not_scored.append(_unscored(f"out-of-fold ({scored_subset})", len(truth)))
    test_score = test_per_class = None
    if test_truth is not None:
        test_score, test_per_class, _ = _score(test_truth, test_probs)
        if test_score is None:
            not_scored.append(_unscored("test", len(test_truth)))
    scores = {
        "oof_lwlrap": oof_score,
        "test_lwlrap": test_score,
        "folds": {f"{r.stage}/{r.fold + 1}": r.valid_lwlrap for r in models},
        "oof_per_class": _by_label(info.vocab, per_class),
        "test_per_class": _by_label(info.vocab, test_per_class),
        "class_weights": _by_label(info.vocab, weights) or dict.fromkeys(info.vocab, 0.0),
        "test_missing": [n for n in names if n not in by_name],
        "not_scored": not_scored,
        "thresholds": thresholds.to_json(),
        "oof_at_thresholds": threshold_scores(truth, oof_probs, thresholds, info.vocab),
        "test_at_thresholds": None
        if test_truth is None
        else threshold_scores(test_truth, test_probs, thresholds, info.vocab),
        "test_micro_f1": None
        if test_truth is None
        else tag_rule_micro_f1(test_truth, test_probs, thresholds, info.vocab),
    }
    if baseline is not None:
        scores["baseline"] = {
            "oof_lwlrap": baseline.oof_lwlrap,
            "test_lwlrap": baseline.test_lwlrap,
            "folds": list(baseline.fold_lwlrap),
            "oof_per_class": _by_label(info.vocab, baseline.oof_per_class),
            "test_per_class": _by_label(info.vocab, baseline.test_per_class),
        }
    write_json_atomic(scores, run_dir / "scores.json")
    return EnsembleResult(
        str(run_dir),
        None if submission is None else str(submission),
        str(run_dir / "oof.parquet"),
        str(run_dir / "scores.json"),
        oof_score,
        test_score,
        tuple(r.valid_lwlrap for r in models),
        str(model_dir),
        tuple(not_scored),
        scores["oof_at_thresholds"]["micro_f1"],
        None if test_truth is None else scores["test_at_thresholds"]["micro_f1"],
    )


def tag_rule_micro_f1(
    truth: np.ndarray, probs: np.ndarray, thresholds: Thresholds, vocab: tuple[str, ...]
) -> dict[str, float]:
    """Micro-F1 of the tags each rule gives: the calibrated thresholds, the top 3 labels,
    and one global threshold of 0.5."""
    rules = {
        "calibrated": probs >= thresholds.array(vocab),
        "top_3": top_k_predicted(probs, 3),
        "global_0.5": probs >= DEFAULT_THRESHOLD,
    }
    return {name: round(f1_scores(truth, pred)["micro_f1"], 5) for name, pred in rules.items()}


def _score(
    truth: np.ndarray, probs: np.ndarray
) -> tuple[float | None, np.ndarray | None, np.ndarray | None]:
    """(lwlrap, per-class lwlrap, class weights), or Nones when no clip has a true label
    (lwlrap is undefined there)."""
    if not truth.any():
        return None, None, None
    per_class, weights = lwlrap_per_class(truth, probs)
    return lwlrap(truth, probs), per_class, weights


def _unscored(what: str, clips: int) -> str:
    return (
        f"{what} lwlrap: not scored, none of its {clips} labelled clips has a label in the "
        "vocabulary"
    )


def _test_predictions(
    ws: Workspace,
    info: DatasetInfo,
    store_dir: Path,
    config: TrainConfig,
    models: list[StageResult],
    run_dir: Path,
    device: str,
    truth: np.ndarray,
) -> tuple[Path | None, np.ndarray | None, np.ndarray | None, list[str], dict]:
    """The submission; the labelled test clips' targets and probabilities (Nones when
    no test clip has labels); the submission's names and the probabilities by name."""
    store = FeatureStore.open(store_dir)
    data_dir = Path(info.data_dir)
    # Every submission row, in sample_submission order; unreadable clips
    # get the scored subset's label frequencies, so the file stays complete.
    test_rows = kept_rows(ws, "test")
    sub_path = data_dir / SAMPLE_SUBMISSION
    names = (
        pd.read_csv(sub_path, encoding="utf-8-sig").fname.tolist()
        if sub_path.exists()
        else [r["fname"] for r in test_rows]
    )
    submission, test_truth, test_probs, by_name = None, None, None, {}
    if names:
        clips = to_clips(store, test_rows, info.vocab)
        probs = _predict_test_clips(ws, store_dir, store, clips, config, models, device)
        prior = truth.mean(axis=0) if len(truth) else np.zeros(len(info.vocab))
        by_name = {r["fname"]: p for r, p in zip(test_rows, probs, strict=True)}
        sub = pd.DataFrame([by_name.get(n, prior) for n in names], columns=list(info.vocab))
        sub.insert(0, "fname", names)
        submission = run_dir / "submission.csv"
        write_atomic(submission, lambda tmp: write_csv_table(sub, tmp))
        labelled = [i for i, r in enumerate(test_rows) if r["labels"]]
        if labelled:
            test_truth = targets([test_rows[i] for i in labelled], info.vocab)
            test_probs = probs[labelled]
    return submission, test_truth, test_probs, names, by_name


def _by_label(vocab: tuple[str, ...], values: Sequence[float] | None) -> dict | None:
    if values is None:
        return None
    return {label: round(float(v), 5) for label, v in zip(vocab, values, strict=True)}


def _predict_test_clips(
    ws: Workspace,
    store_dir: Path,
    store: FeatureStore,
    clips: Clips,
    config: TrainConfig,
    models: list[StageResult],
    device: str,
) -> np.ndarray:
    """The fold models' averaged TTA probabilities of the test clips, computed once.

    They depend only on the model files' bytes, the features (the store's key holds
    the dataset fingerprint and mel settings) and the test-time settings, so a re-run
    whose folds all come from the cache reads them back instead of predicting again.
    """
    files = [Path(r.model_path) for r in models]
    key = settings_hash(store_dir.name, config.eval, *(file_digest(m) for m in files))
    path = ws.test_predictions(key)
    if path.exists():
        return np.load(path)
    probs = [LoadedModel(m, device).predict(store.data, clips, config.eval) for m in files]
    out = ensemble(probs, config.eval.ensemble)
    write_atomic(path, lambda tmp: _save_npy(tmp, out))
    return out


def _save_npy(path: Path, array: np.ndarray) -> None:
    # np.save appends '.npy' to a path that lacks it (a temporary name does).
    with path.open("wb") as f:
        np.save(f, array)
