"""A file's features: read in blocks, its silences cut out, log-mel'd; the one way a
file becomes features, for training's store and for tagging; and the time in the file
of a frame of them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from audiotag.config import MelSettings
from audiotag.features.audio import (
    BLOCK_FRAMES,
    AudioReadError,
    SilenceScan,
    cut_silence,
    open_audio,
)
from audiotag.features.logmel import LogMel, blocks_logmel


def file_logmel(
    source: Path | str | BinaryIO,
    mel: MelSettings,
    intervals: np.ndarray | None = None,
    **options: Any,
) -> np.ndarray:
    """A file's features: `cut_logmel`'s log-mel alone (``options``: its keyword-only
    arguments). Training's feature store and tagging both call this, so they cannot
    disagree."""
    return cut_logmel(source, mel, intervals, **options).logmel


@dataclass(frozen=True)
class CutLogMel:
    """A file's features and where they lie in it: the log-mel of the non-silent
    ``intervals`` (samples at ``samplerate``, the file's own rate), end to end."""

    logmel: np.ndarray  # (frames, n_mels)
    intervals: np.ndarray  # (n, 2) [start, end) samples
    samplerate: int


def cut_logmel(
    source: Path | str | BinaryIO,
    mel: MelSettings,
    intervals: np.ndarray | None = None,
    *,
    name: str | None = None,
    logmel: LogMel | None = None,
    max_seconds: float | None = None,
    block_frames: int = BLOCK_FRAMES,
) -> CutLogMel:
    """A file read, mixed to mono, its silences cut out, resampled and log-mel'd, with
    the silence intervals it cut and the file's sample rate, so that a frame's time in
    the file can be found again (`file_seconds`).

    The file is read in blocks of ``block_frames`` (twice when ``intervals`` is None:
    once to find the silences), so a long file's memory is its log-mel's, not its
    audio's.

    Args:
        source: a path, or an open binary file.
        mel: the mel settings; ``mel.silence_top_db`` finds the silences.
        intervals: ``(n, 2)`` ``[start, end)`` non-silent sample intervals at the
            file's own rate, as ``metadata.parquet`` records them (found with
            ``mel.silence_top_db``); None finds them here.
        name: how errors name a file-like ``source``.
        logmel: a `LogMel` of ``mel`` to reuse across files.
        max_seconds: refuse a longer file, from its header, before decoding it.
        block_frames: frames decoded at a time.

    Returns:
        the features ``(frames, n_mels)``, float32 dB, unclamped, and where they lie.

    Raises:
        AudioReadError: the file cannot be read, is too long, or holds no sound.
    """
    with open_audio(source, name, max_seconds) as audio:
        if intervals is None:
            scan = SilenceScan()
            for block in audio.blocks(block_frames):
                scan.add(block)
            intervals = scan.nonsilent(mel.silence_top_db)
            audio.rewind()
        if len(intervals) == 0:
            raise AudioReadError(audio.label, "no sound (all digital silence)")
        kept = cut_silence(audio.blocks(block_frames), intervals)
        features = blocks_logmel(kept, audio.samplerate, mel, logmel)
        return CutLogMel(features, np.asarray(intervals, dtype=np.int64), audio.samplerate)


def file_seconds(frames: np.ndarray, cut: CutLogMel, mel: MelSettings) -> np.ndarray:
    """Times in the file (s) of frame positions ``(n,)`` (fractional allowed) of a
    `CutLogMel`'s features: the silences cut out before featurising are counted back in.

    Frame ``f`` is centred at ``f * hop_length / sample_rate`` s of the cut signal.
    """
    cut_samples = np.asarray(frames, np.float64) * mel.hop_length / mel.sample_rate
    cut_samples = cut_samples * cut.samplerate
    lengths = (cut.intervals[:, 1] - cut.intervals[:, 0]).astype(np.float64)
    before = np.concatenate([[0.0], np.cumsum(lengths)])
    k = np.clip(np.searchsorted(before, cut_samples, side="right") - 1, 0, len(lengths) - 1)
    inside = np.minimum(cut_samples - before[k], lengths[k])
    return (cut.intervals[k, 0] + inside) / cut.samplerate
