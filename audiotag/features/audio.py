"""Reading audio and finding its non-silent parts: pure functions on numpy arrays."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

# librosa.effects.split's framing, so that "split at silences, threshold 20 dB"
# (SPEC §2) means what it meant in the report's fastaudio pipeline.
SILENCE_FRAME = 2048
SILENCE_HOP = 512


class AudioReadError(ValueError):
    """An audio file that cannot be used; the message names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


# What a path that is not a regular file is, as its error names it. Training, tagging and
# serving never open one: a FIFO blocks the opener, a device (/dev/zero) never ends.
_KINDS = (
    (stat.S_ISDIR, "a directory, not an audio file"),
    (stat.S_ISFIFO, "a FIFO, not an audio file"),
    (stat.S_ISCHR, "a device, not an audio file"),
    (stat.S_ISBLK, "a device, not an audio file"),
    (stat.S_ISSOCK, "a socket, not an audio file"),
)
NO_SUCH_FILE = "no such file"
# How errors name sent bytes that have no name (never the object's repr).
SENT_AUDIO = "the sent audio"


def check_regular_file(path: Path | str) -> os.stat_result:
    """Stats a path (links followed) and refuses anything but a regular file, never opening it.

    The one check training, tagging and serving make before reading a file.

    Returns:
        The file's ``os.stat`` result.

    Raises:
        AudioReadError: the path is missing, cannot be looked up, or is a directory, a
            FIFO, a device or a socket (the message says which).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise AudioReadError(path, NO_SUCH_FILE) from None
    except OSError as err:  # a loop of links, a name too long, a folder without access
        raise AudioReadError(path, f"cannot be looked up ({err.strerror})") from None
    for is_kind, what in _KINDS:
        if is_kind(st.st_mode):
            raise AudioReadError(path, what)
    if not stat.S_ISREG(st.st_mode):
        raise AudioReadError(path, "not a regular file")
    return st


def open_regular_file(path: Path | str) -> BinaryIO:
    """Opens a file for reading only once `check_regular_file` has passed it.

    Opened without blocking and checked again on the open descriptor, so that a file
    swapped for a FIFO or a device between the check and the open is refused too.

    Raises:
        AudioReadError: as `check_regular_file`, or the file changed while opened.
    """
    st = check_regular_file(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise AudioReadError(path, f"cannot be opened ({err.strerror})") from None
    now = os.fstat(fd)
    if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise AudioReadError(path, "changed while being opened")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def sndfile_problem(err: Exception) -> str:
    """libsndfile's message without soundfile's ``Error opening <source>: `` prefix: for
    bytes, the source is an object's repr, with its memory address."""
    return getattr(err, "error_string", None) or type(err).__name__


def read_audio(
    path: Path | str | BinaryIO, name: str | None = None, max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """Reads any file soundfile reads as mono float32 in [-1, 1].

    Args:
        path: a path, or an open binary file (bytes sent to a server).
        name: how errors name a file-like source (default `SENT_AUDIO`).
        max_seconds: refuse a longer file, from its header, before decoding it.

    Returns:
        ``(samples, sample_rate)``; samples has shape ``(frames,)``.

    Raises:
        AudioReadError: the file is missing, not a regular file (a directory, a FIFO, a
            device), unreadable, empty, too long or holds NaN/inf.
    """
    if hasattr(path, "read"):
        label: Path | str = name or SENT_AUDIO
        return _decode(path, label, max_seconds)
    with open_regular_file(path) as f:
        # The descriptor, not the file object: libsndfile reads it natively.
        return _decode(f.fileno(), path, max_seconds)


def _decode(
    source: BinaryIO | int, label: Path | str, max_seconds: float | None
) -> tuple[np.ndarray, int]:
    try:
        with sf.SoundFile(source, closefd=False) as f:
            sr, pcm16 = f.samplerate, f.subtype == "PCM_16"
            limit = -1
            if max_seconds is not None:
                seconds = f.frames / max(sr, 1)
                if seconds > max_seconds:
                    raise AudioReadError(
                        label, f"{seconds:.1f} s long; the limit is {max_seconds:g} s"
                    )
                # A header can understate its length: never read past the limit.
                limit = int(max_seconds * sr) + 1
            # 16-bit PCM (most WAV files) decodes about 30% faster as integers; scaled
            # here, they are the very floats libsndfile's own conversion gives (x / 32768).
            data = f.read(limit, dtype="int16" if pcm16 else "float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as err:
        if isinstance(err, AudioReadError):
            raise
        raise AudioReadError(label, f"unreadable audio ({sndfile_problem(err)})") from None
    if max_seconds is not None and data.shape[0] > max_seconds * sr:
        raise AudioReadError(label, f"longer than the limit of {max_seconds:g} s")
    if data.shape[0] == 0:
        raise AudioReadError(label, "no audio frames")
    if pcm16:
        data = data.astype(np.float32) * np.float32(1 / 32768)
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not pcm16 and not np.isfinite(mono).all():
        raise AudioReadError(label, "samples contain NaN or infinity")
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)


def frame_rms_db(samples: np.ndarray) -> np.ndarray:
    """RMS per frame in dB relative to full scale, shape ``(n_frames,)``.

    Frames are centred as in librosa (``frame_length=2048, hop_length=512``).
    """
    pad = SILENCE_FRAME // 2
    padded = np.pad(samples.astype(np.float64), (pad, pad))
    n_frames = 1 + max(0, len(padded) - SILENCE_FRAME) // SILENCE_HOP
    # Mean square per frame from a cumulative sum: O(n) instead of O(n * frame).
    csum = np.concatenate([[0.0], np.cumsum(padded**2)])
    starts = np.arange(n_frames) * SILENCE_HOP
    ends = np.minimum(starts + SILENCE_FRAME, len(padded))
    power = (csum[ends] - csum[starts]) / SILENCE_FRAME
    return 10.0 * np.log10(np.maximum(power, 1e-20))


def find_nonsilent(samples: np.ndarray, top_db: float) -> np.ndarray:
    """Sample intervals louder than ``top_db`` below the clip's loudest frame.

    Same rule as ``librosa.effects.split(y, top_db=top_db)``; audiotag's threshold
    is ``MelSettings.silence_top_db``.

    Args:
        samples: ``(samples,)`` mono audio.
        top_db: frames this many dB below the loudest frame are silence; positive.

    Returns:
        int64 array ``(n_intervals, 2)`` of ``[start, end)`` sample indices;
        empty when the clip is all silence (digital zero).
    """
    if top_db <= 0:
        raise ValueError(f"top_db must be positive, got {top_db!r}")
    if len(samples) == 0 or not np.any(samples):
        return np.zeros((0, 2), dtype=np.int64)
    db = frame_rms_db(samples)
    loud = db > db.max() - top_db
    edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(np.int8), [0]])))
    frames = edges.reshape(-1, 2)
    intervals = np.minimum(frames * SILENCE_HOP, len(samples)).astype(np.int64)
    return intervals[intervals[:, 1] > intervals[:, 0]]


def remove_silence(samples: np.ndarray, intervals: np.ndarray) -> np.ndarray:
    """Concatenates the non-silent intervals (the whole clip when none is given)."""
    if len(intervals) == 0:
        return samples
    return np.concatenate([samples[s:e] for s, e in intervals])
