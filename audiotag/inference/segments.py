"""Time segments: a file's window probabilities merged into where each label is heard."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audiotag.config import MelSettings, SegmentSettings
from audiotag.features.files import CutLogMel, file_seconds


@dataclass(frozen=True)
class Segment:
    """A stretch of a file where a label's window probabilities reach its threshold."""

    start: float  # seconds from the file's start
    end: float
    label: str
    probability: float  # the highest window probability inside


def find_segments(
    starts: np.ndarray,
    window_probs: np.ndarray,
    cut: CutLogMel,
    window_frames: int,
    mel: MelSettings,
    vocab: tuple[str, ...],
    thresholds: np.ndarray,
    settings: SegmentSettings,
) -> list[Segment]:
    """A file's segments from its windows: per label, the runs of windows at or above its
    threshold, each window standing for the frames nearer its centre than any other's;
    runs closer than ``settings.min_gap`` s merged, shorter than ``min_duration`` dropped.

    Times are in the file: the silences cut before featurising are counted back in.
    Sorted by start, then label.
    """
    total = len(cut.logmel)
    width = min(window_frames, total)
    centres = starts.astype(np.float64) + width / 2
    bounds = np.concatenate([[0.0], (centres[1:] + centres[:-1]) / 2, [float(total)]])
    # A frame position is the centre of its STFT frame: frame f covers [f - 1/2, f + 1/2).
    seconds = file_seconds(np.clip(bounds - 0.5, 0, None), cut, mel)
    out: list[Segment] = []
    for c, label in enumerate(vocab):
        on = window_probs[:, c] >= thresholds[c]
        if not on.any():
            continue
        edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(np.int8), [0]])))
        runs: list[list[float]] = []
        for lo, hi in edges.reshape(-1, 2):
            start, end, p = seconds[lo], seconds[hi], float(window_probs[lo:hi, c].max())
            if runs and start - runs[-1][1] < settings.min_gap:
                runs[-1][1], runs[-1][2] = end, max(runs[-1][2], p)
            else:
                runs.append([start, end, p])
        out += [
            Segment(float(a), float(b), label, p)
            for a, b, p in runs
            if b - a >= settings.min_duration
        ]
    return sorted(out, key=lambda s: (s.start, s.label))
