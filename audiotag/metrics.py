"""lwlrap: label-weighted label-ranking average precision (the FAT2019 metric)."""

from __future__ import annotations

import numpy as np


def _precisions(truth: np.ndarray, scores: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Label-ranking precision of every true (sample, label) pair; 0 elsewhere.

    Ties count against the label, as in scikit-learn: rank is the number of
    labels scored at least as high.
    """
    out = np.zeros(truth.shape, dtype=np.float64)
    for lo in range(0, len(truth), chunk):
        s = scores[lo : lo + chunk].astype(np.float64)
        t = truth[lo : lo + chunk]
        ge = s[:, None, :] >= s[:, :, None]  # ge[n, c, j]: label j scored >= label c
        rank = ge.sum(axis=2)
        hits = (ge & t[:, None, :]).sum(axis=2)
        out[lo : lo + chunk] = np.where(t, hits / np.maximum(rank, 1), 0.0)
    return out


def _check(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(truth).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if truth.shape != scores.shape or truth.ndim != 2:
        raise ValueError(f"truth {truth.shape} and scores {scores.shape} must be equal 2-D shapes")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinity")
    return truth, scores


def lwlrap(truth: np.ndarray, scores: np.ndarray) -> float:
    """lwlrap over the whole set (never averaged per batch).

    Args:
        truth: ``(n_samples, n_labels)`` 0/1 or bool.
        scores: ``(n_samples, n_labels)`` any monotone score.

    Equals ``label_ranking_average_precision_score(truth, scores,
    sample_weight=truth.sum(1))``.
    """
    truth, scores = _check(truth, scores)
    total = truth.sum()
    if total == 0:
        raise ValueError("no true labels: lwlrap is undefined")
    return float(_precisions(truth, scores).sum() / total)


def lwlrap_per_class(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-label lwlrap and weights (share of true labels).

    ``(per_class * weights).sum()`` is the lwlrap.
    """
    truth, scores = _check(truth, scores)
    prec = _precisions(truth, scores)
    counts = truth.sum(axis=0)
    per_class = np.divide(prec.sum(axis=0), counts, out=np.zeros(len(counts)), where=counts > 0)
    return per_class, counts / max(counts.sum(), 1)


def clip_lwlrap(truth: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Each clip's own label-ranking average precision: the mean, over its true labels,
    of the precision at that label's rank (ties count against it, as in `lwlrap`).

    Args:
        truth: ``(n_clips, n_labels)`` 0/1 or bool.
        scores: ``(n_clips, n_labels)`` any monotone score.

    Returns:
        ``(n_clips,)`` float64; NaN for a clip without a true label.
    """
    truth, scores = _check(truth, scores)
    counts = truth.sum(axis=1)
    sums = _precisions(truth, scores).sum(axis=1)
    return np.divide(sums, counts, out=np.full(len(counts), np.nan), where=counts > 0)


def chance_lwlrap(truth: np.ndarray, draws: int = 16, seed: int = 0) -> float:
    """The lwlrap that random scores reach on ``truth``, averaged over ``draws`` seeded
    draws: the level a model that learned nothing scores."""
    rng = np.random.default_rng(seed)
    return float(np.mean([lwlrap(truth, rng.random(truth.shape)) for _ in range(draws)]))
