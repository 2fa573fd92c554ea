"""A linear baseline on pooled log-mel statistics: what the network has to beat.

Each clip becomes the mean and standard deviation over time of its log-mel frames
(``2 * n_mels`` numbers, read from the feature store), and one logistic regression
per label is fitted on them: a few seconds on a CPU, and on small real datasets a
strong reference (a network that does not beat it was not worth training).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from audiotag.training.batches import Clips


def pooled_stats(data: np.ndarray, clips: Clips) -> np.ndarray:
    """Each clip's log-mel mean and standard deviation over time.

    Args:
        data: the feature store's array, ``(frames, n_mels)``.
        clips: where each clip's frames are in ``data``.

    Returns:
        ``(n_clips, 2 * n_mels)`` float64.
    """
    out = np.empty((len(clips), 2 * data.shape[1]))
    for i, (offset, frames) in enumerate(zip(clips.offsets, clips.frames, strict=True)):
        x = np.asarray(data[offset : offset + max(int(frames), 1)], dtype=np.float64)
        out[i] = np.concatenate([x.mean(axis=0), x.std(axis=0)])
    return out


class LinearBaseline:
    """One standardised logistic regression per label; a label that never (or always)
    occurs in the training clips is predicted at its training frequency."""

    def __init__(self, c: float = 1.0, seed: int = 0) -> None:
        self.c, self.seed = c, seed
        self.models: list[object | float] = []

    def fit(self, x: np.ndarray, y: np.ndarray) -> LinearBaseline:
        """``x``: ``(n, features)``; ``y``: ``(n, labels)`` multi-hot."""
        self.models = []
        for j in range(y.shape[1]):
            col = y[:, j] > 0.5
            if col.all() or not col.any():
                self.models.append(float(col.mean()))
                continue
            model = make_pipeline(
                StandardScaler(),
                LogisticRegression(C=self.c, max_iter=1000, random_state=self.seed),
            )
            self.models.append(model.fit(x, col))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``(n, labels)`` probabilities."""
        cols = [
            np.full(len(x), m) if isinstance(m, float) else m.predict_proba(x)[:, 1]
            for m in self.models
        ]
        return np.stack(cols, axis=1).astype(np.float32)
