"""Per-class decision thresholds calibrated on out-of-fold predictions, and the precision,
recall and F1 that tags at those thresholds give.

The rule (written to the model package beside the thresholds):

- a label with at least `MIN_POSITIVES` positive clips among the out-of-fold
  predictions gets the threshold that maximises its own F1 there; the threshold is
  set halfway between the lowest probability it keeps and the next lower one seen,
  so that a clip scored a hair below the best cut on new audio is still tagged;
- a label with fewer positives (its F1 curve is a handful of points, or none) gets the
  global threshold: the one that maximises micro-F1 over every (clip, label) pair of
  the out-of-fold predictions, chosen the same way; `DEFAULT_THRESHOLD` (0.5) when no
  pair is positive at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_POSITIVES = 3
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class Thresholds:
    """A threshold per label, and how each was chosen."""

    by_label: dict[str, float]
    global_threshold: float
    fallback: tuple[str, ...]  # labels with fewer than `min_positives` positives
    min_positives: int = MIN_POSITIVES

    def array(self, vocab: tuple[str, ...]) -> np.ndarray:
        """``(n_labels,)`` thresholds in ``vocab`` order."""
        return np.array([self.by_label[label] for label in vocab], dtype=np.float64)

    def to_json(self) -> dict:
        return {
            "by_label": {k: round(v, 6) for k, v in self.by_label.items()},
            "global": round(self.global_threshold, 6),
            "fallback": list(self.fallback),
            "min_positives": self.min_positives,
            "rule": "max F1 per label on the out-of-fold predictions; labels with fewer "
            "than min_positives positives: the global max micro-F1 threshold",
        }

    @classmethod
    def from_json(cls, obj: dict) -> Thresholds:
        return cls(
            {k: float(v) for k, v in obj["by_label"].items()},
            float(obj["global"]),
            tuple(obj["fallback"]),
            int(obj["min_positives"]),
        )


def best_f1_threshold(truth: np.ndarray, probs: np.ndarray) -> float | None:
    """The threshold that maximises F1 of ``probs >= t`` against boolean ``truth``
    (both ``(n,)``), halfway below the lowest probability kept; None without positives.

    Ties between cuts go to the higher one (fewer tags at equal F1).
    """
    truth, probs = np.asarray(truth, bool).ravel(), np.asarray(probs, np.float64).ravel()
    positives = int(truth.sum())
    if positives == 0:
        return None
    order = np.argsort(-probs, kind="stable")
    p, t = probs[order], truth[order]
    # Cuts only between distinct probabilities: the last index of each run of equal values.
    last = np.flatnonzero(np.append(p[1:] != p[:-1], True))
    tp = np.cumsum(t)[last]
    kept = last + 1
    f1 = 2 * tp / (kept + positives)
    best = int(np.argmax(f1))  # the first maximum: the highest cut
    cut = p[last[best]]
    below = p[last[best] + 1] if last[best] + 1 < len(p) else max(cut - 1e-3, 0.0)
    return float((cut + below) / 2)


def calibrate_thresholds(
    truth: np.ndarray, probs: np.ndarray, vocab: tuple[str, ...], min_positives: int = MIN_POSITIVES
) -> Thresholds:
    """Per-label thresholds from out-of-fold ``truth`` and ``probs`` ``(n_clips, n_labels)``
    (the module's rule)."""
    truth = np.asarray(truth, bool)
    probs = np.asarray(probs, np.float64)
    if truth.shape != probs.shape or truth.shape[1:] != (len(vocab),):
        raise ValueError(
            f"truth {truth.shape} and probs {probs.shape} must be (clips, {len(vocab)})"
        )
    pooled = best_f1_threshold(truth, probs)
    global_t = DEFAULT_THRESHOLD if pooled is None else pooled
    by_label, fallback = {}, []
    for c, label in enumerate(vocab):
        own = best_f1_threshold(truth[:, c], probs[:, c])
        if own is None or int(truth[:, c].sum()) < min_positives:
            by_label[label] = global_t
            fallback.append(label)
        else:
            by_label[label] = own
    return Thresholds(by_label, global_t, tuple(fallback), min_positives)


def f1_scores(truth: np.ndarray, predicted: np.ndarray) -> dict:
    """Per-label precision, recall and F1, and micro-F1, of boolean ``predicted`` against
    ``truth`` ``(n_clips, n_labels)``; 0 where a ratio has nothing to count."""
    truth, predicted = np.asarray(truth, bool), np.asarray(predicted, bool)
    tp = (truth & predicted).sum(axis=0).astype(np.float64)
    fp = (~truth & predicted).sum(axis=0)
    fn = (truth & ~predicted).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    denom = 2 * tp.sum() + fp.sum() + fn.sum()
    micro = float(2 * tp.sum() / denom) if denom else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "micro_f1": micro}


def threshold_scores(
    truth: np.ndarray, probs: np.ndarray, thresholds: Thresholds, vocab: tuple[str, ...]
) -> dict:
    """``{"micro_f1": x, "per_class": {label: {"precision", "recall", "f1", "positives"}}}``
    of tags at ``thresholds``."""
    truth = np.asarray(truth, bool)
    s = f1_scores(truth, np.asarray(probs) >= thresholds.array(vocab))
    per_class = {
        label: {
            "precision": round(float(s["precision"][c]), 5),
            "recall": round(float(s["recall"][c]), 5),
            "f1": round(float(s["f1"][c]), 5),
            "positives": int(truth[:, c].sum()),
        }
        for c, label in enumerate(vocab)
    }
    return {"micro_f1": round(s["micro_f1"], 5), "per_class": per_class}


def top_k_predicted(probs: np.ndarray, k: int) -> np.ndarray:
    """Boolean ``(n_clips, n_labels)``: each clip's ``k`` most probable labels."""
    probs = np.asarray(probs)
    out = np.zeros(probs.shape, dtype=bool)
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    np.put_along_axis(out, top, True, axis=1)
    return out
