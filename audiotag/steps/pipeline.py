"""The DAG's steps as plain functions on a work directory (tasks wrap them one each)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from audiotag.config import Stage, TrainConfig, settings_hash
from audiotag.data.layout import SAMPLE_SUBMISSION
from audiotag.features.store import FeatureStore, build_feature_store
from audiotag.inference.predict import LoadedModel, ensemble
from audiotag.inference.tagging import write_package
from audiotag.metrics import lwlrap, lwlrap_per_class
from audiotag.steps.workspace import Workspace
from audiotag.storage import file_digest, write_atomic, write_json_atomic
from audiotag.training.batches import Clips
from audiotag.training.stage import EpochRecord, StageResult, train_stage


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


def stage_key(config: TrainConfig, stage: Stage, data_key: str) -> str:
    """What determines a stage's weights: data, settings up to this stage, seed.

    ``data_key`` is ``DatasetInfo.model_key`` (kept files, labels, vocabulary).

    Evaluation settings are left out (they do not change weights); the curated
    key includes the noisy settings, since it starts from noisy weights.
    """
    parts = config.model_dump(mode="json", exclude={"eval", "preset"})
    if stage == "noisy":
        parts.pop("curated")
    return settings_hash(data_key, stage, json.dumps(parts, sort_keys=True))


def fold_result_key(
    config: TrainConfig,
    stage: Stage,
    fold: int,
    data_key: str,
    init_model: Path | None,
) -> str:
    """What determines a fold's result (SPEC §5), and nothing else.

    The stage's own settings (``stage_key``: data, settings up to this stage, seed),
    the fold, the bytes of the weights it starts from, and how validation clips are
    scored (windows, pooling). Test-time settings (TTA passes, the ensemble mean) and a
    later stage's settings are left out: changing them never retrains a fold.
    """
    scoring = (config.eval.window_overlap, config.eval.pooling)
    init = file_digest(init_model) if init_model is not None else "scratch"
    return settings_hash(stage_key(config, stage, data_key), fold, *scoring, init)


def fold_model_path(
    ws: Workspace, config: TrainConfig, stage: Stage, fold: int, data_key: str
) -> Path:
    """Where ``train_fold`` writes the stage's model for this fold."""
    return ws.stage_dir(stage_key(config, stage, data_key), stage, fold) / "model.pt"


def feature_key(config: TrainConfig, fingerprint: str) -> str:
    return settings_hash(fingerprint, config.mel)


def kept_rows(ws: Workspace, subset: str | None = None) -> list[dict]:
    rows = pq.read_table(ws.kept).to_pylist()
    return [r for r in rows if subset is None or r["subset"] == subset]


def build_features(ws: Workspace, data_dir: Path, config: TrainConfig, fingerprint: str) -> Path:
    """The feature store of every kept file, cached by fingerprint and mel settings."""
    return build_feature_store(
        kept_rows(ws), data_dir, config.mel, ws.features(feature_key(config, fingerprint))
    )


def to_clips(store: FeatureStore, rows: list[dict], vocab: tuple[str, ...]) -> Clips:
    """Rows -> Clips with multi-hot targets; labels outside ``vocab`` are ignored."""
    offsets, frames = store.locate([(r["subset"], r["fname"]) for r in rows])
    return Clips(offsets, frames, _targets(rows, vocab).astype(np.float32))


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


def train_fold(
    ws: Workspace,
    info: DatasetInfo,
    store_dir: Path,
    config: TrainConfig,
    stage: Stage,
    fold: int,
    init_weights: Path | None = None,
    device: str = "cpu",
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> StageResult:
    """Trains ``stage`` on fold ``fold`` of its subset; resumes from checkpoints."""
    store = FeatureStore.open(store_dir)
    train_rows, valid_rows = split_fold(ws, stage, fold)
    out_dir = fold_model_path(ws, config, stage, fold, info.model_key).parent
    result = train_stage(
        data=store.data,
        train=to_clips(store, train_rows, info.vocab),
        valid=to_clips(store, valid_rows, info.vocab),
        vocab=info.vocab,
        config=config,
        stage=stage,
        fold=fold,
        out_dir=out_dir,
        init_weights=init_weights,
        device=device,
        on_epoch=on_epoch,
    )
    probs = np.load(out_dir / "valid_probs.npy")
    frame = pd.DataFrame(probs, columns=list(info.vocab))
    frame.insert(0, "fold", fold)
    frame.insert(0, "fname", [r["fname"] for r in valid_rows])
    write_atomic(out_dir / "valid.parquet", lambda tmp: frame.to_parquet(tmp, index=False))
    return result


@dataclass(frozen=True)
class EnsembleResult:
    run_dir: str
    submission: str | None
    oof: str
    scores: str
    oof_lwlrap: float
    test_lwlrap: float | None
    fold_lwlrap: tuple[float, ...]
    model_dir: str = ""


def _targets(rows: list[dict], vocab: tuple[str, ...]) -> np.ndarray:
    col = {label: i for i, label in enumerate(vocab)}
    out = np.zeros((len(rows), len(vocab)), dtype=bool)
    for i, row in enumerate(rows):
        for label in row["labels"]:
            if label in col:
                out[i, col[label]] = True
    return out


def predict_test(
    ws: Workspace,
    info: DatasetInfo,
    store_dir: Path,
    config: TrainConfig,
    curated: list[StageResult],
    run_dir: Path,
    device: str = "cpu",
) -> EnsembleResult:
    """TTA predictions of every curated model on the test set, averaged into the submission.

    Also gathers the out-of-fold predictions and writes ``scores.json``.
    """
    store = FeatureStore.open(store_dir)
    data_dir = Path(info.data_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    # Out-of-fold: every curated clip scored by the model that never saw it.
    parts = [pd.read_parquet(Path(r.model_path).parent / "valid.parquet") for r in curated]
    oof = pd.concat(parts, ignore_index=True)
    labels = {r["fname"]: r["labels"] for r in kept_rows(ws, "curated")}
    truth = _targets([{"labels": labels[f]} for f in oof.fname], info.vocab)
    oof_score = lwlrap(truth, oof[list(info.vocab)].to_numpy())
    write_atomic(run_dir / "oof.parquet", lambda tmp: oof.to_parquet(tmp, index=False))

    # Test: every submission row, in sample_submission order; unreadable clips
    # get the curated label frequencies, so the file stays complete.
    test_rows = kept_rows(ws, "test")
    sub_path = data_dir / SAMPLE_SUBMISSION
    names = (
        pd.read_csv(sub_path, encoding="utf-8-sig").fname.tolist()
        if sub_path.exists()
        else [r["fname"] for r in test_rows]
    )
    submission, test_score, by_name = None, None, {}
    if names:
        clips = to_clips(store, test_rows, info.vocab)
        test_probs = _predict_test_clips(ws, store_dir, store, clips, config, curated, device)
        prior = truth.mean(axis=0)
        by_name = {r["fname"]: p for r, p in zip(test_rows, test_probs, strict=True)}
        sub = pd.DataFrame([by_name.get(n, prior) for n in names], columns=list(info.vocab))
        sub.insert(0, "fname", names)
        submission = run_dir / "submission.csv"
        write_atomic(submission, lambda tmp: sub.to_csv(tmp, index=False, float_format="%.6f"))
        labelled = [i for i, r in enumerate(test_rows) if r["labels"]]
        if labelled:
            test_truth = _targets([test_rows[i] for i in labelled], info.vocab)
            test_score = lwlrap(test_truth, test_probs[labelled])
    per_class, weights = lwlrap_per_class(truth, oof[list(info.vocab)].to_numpy())
    scores = {
        "oof_lwlrap": oof_score,
        "test_lwlrap": test_score,
        "folds": {f"curated/{r.fold + 1}": r.valid_lwlrap for r in curated},
        "oof_per_class": dict(zip(info.vocab, per_class.round(5).tolist(), strict=True)),
        "class_weights": dict(zip(info.vocab, weights.round(5).tolist(), strict=True)),
        "test_missing": [n for n in names if n not in by_name],
    }
    write_json_atomic(scores, run_dir / "scores.json")
    model_dir = write_package([Path(r.model_path) for r in curated], run_dir / "model", config.eval)
    return EnsembleResult(
        str(run_dir),
        None if submission is None else str(submission),
        str(run_dir / "oof.parquet"),
        str(run_dir / "scores.json"),
        oof_score,
        test_score,
        tuple(r.valid_lwlrap for r in curated),
        str(model_dir),
    )


def _predict_test_clips(
    ws: Workspace,
    store_dir: Path,
    store: FeatureStore,
    clips: Clips,
    config: TrainConfig,
    curated: list[StageResult],
    device: str,
) -> np.ndarray:
    """The fold models' averaged TTA probabilities of the test clips, computed once.

    They depend only on the model files' bytes, the features (the store's key holds
    the dataset fingerprint and mel settings) and the test-time settings, so a re-run
    whose folds all come from the cache reads them back instead of predicting again.
    """
    models = [Path(r.model_path) for r in curated]
    key = settings_hash(store_dir.name, config.eval, *(file_digest(m) for m in models))
    path = ws.test_predictions(key)
    if path.exists():
        return np.load(path)
    probs = [LoadedModel(m, device).predict(store.data, clips, config.eval) for m in models]
    out = ensemble(probs, config.eval.ensemble)
    write_atomic(path, lambda tmp: _save_npy(tmp, out))
    return out


def _save_npy(path: Path, array: np.ndarray) -> None:
    # np.save appends '.npy' to a path that lacks it (a temporary name does).
    with path.open("wb") as f:
        np.save(f, array)
