"""Picking the noisy clips a stage's init models agree with (SPEC §1, beyond the report).

A stage with ``noisy_selection`` trains on its subsets plus the noisy clips whose
out-of-fold predictions by its init stage's fold models score their own labels well.
Out-of-fold means: a clip's prediction averages only the fold models that never
trained on it. The result is one Parquet file per set of models and settings
(`SELECTION_SCHEMA`), read back on a re-run.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from audiotag.config import TrainConfig, settings_hash
from audiotag.config.settings import SelectionSettings
from audiotag.data.schemas import SELECTION_SCHEMA
from audiotag.features.store import FeatureStore
from audiotag.inference.predict import LoadedModel
from audiotag.metrics import clip_lwlrap
from audiotag.steps.dataset import DatasetInfo, split_fold, targets, to_clips
from audiotag.steps.workspace import Workspace
from audiotag.storage import file_digest, write_parquet_atomic
from audiotag.training.stage import StageResult

REASONS = (
    "agrees",
    "relabelled",
    "below_threshold",
    "over_label_cap",
    "no_label_in_vocabulary",
    "no_unseen_model",
)
# Part of every selection's key: bump it when the rules below change.
RULES_VERSION = 1

# (model file, noisy rows) -> their clip probabilities, (len(rows), len(vocab)).
Predict = Callable[[Path, list[dict]], np.ndarray]


def unseen_models(
    ws: Workspace, config: TrainConfig, init: str
) -> tuple[list[dict], list[list[int]]]:
    """The noisy clips of the folds, and for each the folds whose ``init`` models never
    trained on it.

    Fold model j trained on noisy clip c when a stage of ``init``'s lineage trains on
    ``noisy`` and c lies in noisy fold j's training part; without such a stage, no
    model saw any noisy clip.
    """
    n = config.folds.n_folds
    parts = [split_fold(ws, "noisy", j) for j in range(n)]
    rows = [r for _, held in parts for r in held]
    if not any("noisy" in st.subsets for st in config.lineage(init)):
        return rows, [list(range(n)) for _ in rows]
    seen = [{r["fname"] for r in train} for train, _ in parts]
    return rows, [[j for j in range(n) if r["fname"] not in seen[j]] for r in rows]


def predict_unseen(
    rows: list[dict], unseen: list[list[int]], models: list[Path], predict: Predict, n_labels: int
) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities ``(len(rows), n_labels)``, has-a-prediction mask): each clip's
    prediction is the mean of the models in its ``unseen`` list, and only theirs."""
    sums = np.zeros((len(rows), n_labels))
    counts = np.zeros(len(rows))
    for j, model in enumerate(models):
        idx = [i for i, folds in enumerate(unseen) if j in folds]
        if idx:
            sums[idx] += predict(model, [rows[i] for i in idx])
            counts[idx] += 1
    has = counts > 0
    sums[has] /= counts[has, None]
    return sums, has


def decide(
    rows: list[dict],
    probs: np.ndarray,
    has: np.ndarray,
    vocab: tuple[str, ...],
    settings: SelectionSettings,
) -> list[dict]:
    """One `SELECTION_SCHEMA` row per clip, in input order.

    A clip whose prediction scores its own labels at least ``min_lwlrap`` agrees; with
    ``relabel``, one that does not (or has no label in ``vocab``) takes the labels
    predicted with at least ``relabel_min_prob``, if any. Then, best first (agreeing
    clips by score, then relabelled ones by the mean probability of their labels), a
    clip is kept unless one of its labels already has ``max_per_label`` kept clips.
    """
    truth = targets(rows, vocab)
    scores = clip_lwlrap(truth, np.where(has[:, None], probs, 0.0))
    out, ranked = [], []
    for i, row in enumerate(rows):
        labels = list(row["labels"])
        rec = {"fname": row["fname"], "labels": labels, "new_labels": labels, "kept": False}
        rec["clip_lwlrap"] = float(scores[i]) if has[i] and truth[i].any() else None
        if not has[i]:
            rec["reason"] = "no_unseen_model"
        elif not truth[i].any():
            rec["reason"] = "no_label_in_vocabulary"
        elif scores[i] >= settings.min_lwlrap:
            rec["reason"] = "agrees"
            ranked.append((0, -scores[i], row["fname"], i))
        else:
            rec["reason"] = "below_threshold"
        if settings.relabel and rec["reason"] in ("below_threshold", "no_label_in_vocabulary"):
            order = np.argsort(-probs[i], kind="stable")
            new = [vocab[c] for c in order if probs[i, c] >= settings.relabel_min_prob]
            if new:
                rec.update(new_labels=new, reason="relabelled")
                confidence = float(np.mean([probs[i, vocab.index(v)] for v in new]))
                ranked.append((1, -confidence, row["fname"], i))
        out.append(rec)
    _apply_cap(out, sorted(ranked), set(vocab), settings.max_per_label)
    return out


def _apply_cap(out: list[dict], ranked: list[tuple], vocab: set[str], cap: int | None) -> None:
    """Keeps the ranked candidates in order while none of their labels is full."""
    per_label: Counter[str] = Counter()
    for *_, i in ranked:
        labels = [v for v in out[i]["new_labels"] if v in vocab]
        if cap is not None and any(per_label[v] >= cap for v in labels):
            out[i]["reason"] = "over_label_cap"
            continue
        out[i]["kept"] = True
        per_label.update(labels)


def selection_key(
    ws: Workspace,
    info: DatasetInfo,
    store_dir: Path,
    config: TrainConfig,
    stage: str,
    init_results: list[StageResult],
) -> str:
    """What determines a selection: the init models' bytes, the selection settings, the
    noisy folds, the data (labels, vocabulary, features) and how clips are scored."""
    models = _by_fold(init_results, config)
    folds = pq.read_table(ws.folds).to_pandas()
    noisy = folds[folds.subset == "noisy"].sort_values("fname")
    return settings_hash(
        RULES_VERSION,
        info.model_key,
        Path(store_dir).name,
        config.stage(stage).noisy_selection or "none",
        # Which models saw which clips: the init stage's lineage.
        *(st.model_dump_json() for st in config.lineage(models[0].stage)),
        json.dumps([[str(f), int(k)] for f, k in zip(noisy.fname, noisy.fold, strict=True)]),
        config.eval.window_overlap,
        config.eval.pooling,
        *(file_digest(Path(r.model_path)) for r in models),
    )


def _by_fold(init_results: list[StageResult], config: TrainConfig) -> list[StageResult]:
    by_fold = sorted(init_results, key=lambda r: r.fold)
    if [r.fold for r in by_fold] != list(range(config.folds.n_folds)):
        raise ValueError(
            f"selection needs one init model per fold 0..{config.folds.n_folds - 1}, "
            f"got folds {[r.fold for r in by_fold]}"
        )
    return by_fold


def _model_predict(
    store_dir: Path, config: TrainConfig, vocab: tuple[str, ...], device: str
) -> Predict:
    """The default `Predict`: a fold model's clean whole-clip prediction (no TTA)."""
    store = FeatureStore.open(store_dir)
    ev = config.eval.model_copy(update={"tta": 0})

    def predict(model: Path, rows: list[dict]) -> np.ndarray:
        loaded = LoadedModel(model, device)
        if loaded.vocab != vocab:
            raise ValueError(f"{model}: its vocabulary differs from the dataset's")
        return loaded.predict(store.data, to_clips(store, rows, vocab), ev)

    return predict


def select_noisy(
    ws: Workspace,
    info: DatasetInfo,
    store_dir: Path,
    config: TrainConfig,
    stage: str,
    init_results: list[StageResult],
    device: str = "cpu",
    predict: Predict | None = None,
) -> Path:
    """Writes (or reads back) the noisy selection of ``stage``, made with the fold
    models of its init stage (``init_results``); returns the file's path.

    Args:
        predict: how a model file predicts rows; default: `LoadedModel` on the store.

    Raises:
        ValueError: the stage has no ``noisy_selection`` or init, or a fold model is
            missing.
    """
    st = config.stage(stage)
    if st.noisy_selection is None or st.init is None:
        raise ValueError(f"stage {stage!r} has no noisy_selection (or no init) to select with")
    by_fold = _by_fold(init_results, config)
    path = ws.selection(selection_key(ws, info, store_dir, config, stage, by_fold))
    if path.exists():
        return path
    rows, unseen = unseen_models(ws, config, by_fold[0].stage)
    models = [Path(r.model_path) for r in by_fold]
    predict = predict or _model_predict(store_dir, config, info.vocab, device)
    probs, has = predict_unseen(rows, unseen, models, predict, len(info.vocab))
    table = decide(rows, probs, has, info.vocab, st.noisy_selection)
    return write_parquet_atomic(pa.Table.from_pylist(table, schema=SELECTION_SCHEMA), path)
