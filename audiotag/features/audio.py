"""Reading audio and finding its non-silent parts: pure functions on numpy arrays."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

# librosa.effects.split's framing, so that "split at silences, threshold 20 dB"
# (SPEC §2) means what it meant in the report's fastaudio pipeline.
SILENCE_FRAME = 2048
SILENCE_HOP = 512  # a frame is four hops: SilenceScan sums them


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


def _unreadable(label: Path | str, err: Exception) -> AudioReadError:
    return AudioReadError(label, f"unreadable audio ({sndfile_problem(err)})")


# Frames decoded at a time: about 24 s at 44.1 kHz, 4 MB of mono float32. A long file
# is read in blocks of this many frames and never held whole (a 2-hour recording is
# 1.3 GB of float32, and its float64 copies were several times that).
BLOCK_FRAMES = 1 << 20


class AudioStream:
    """An open audio file, decoded in blocks of mono float32 in [-1, 1].

    Made by `open_audio`. ``samplerate``, ``channels`` and ``subtype`` come from the
    header; `blocks` decodes from the current position, `rewind` goes back to the start.
    """

    def __init__(self, f: sf.SoundFile, label: Path | str, max_seconds: float | None) -> None:
        self._f, self.label, self.max_seconds = f, label, max_seconds
        self.samplerate, self.channels, self.subtype = int(f.samplerate), f.channels, f.subtype
        self._limit: int | None = None
        if max_seconds is not None:
            seconds = f.frames / max(self.samplerate, 1)
            if seconds > max_seconds:
                raise AudioReadError(label, f"{seconds:.1f} s long; the limit is {max_seconds:g} s")
            # A header can understate its length: never read past the limit.
            self._limit = int(max_seconds * self.samplerate) + 1

    def blocks(self, block_frames: int | None = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """Mono float32 blocks ``(<= block_frames,)`` to the end; None: the rest in one block.

        Raises:
            AudioReadError: a block cannot be decoded, holds NaN or infinity, the file is
                longer than ``max_seconds`` or has no frames (once the end is reached).
        """
        # 16-bit PCM (most WAV files) decodes about 30% faster as integers; scaled
        # here, they are the very floats libsndfile's own conversion gives (x / 32768).
        pcm16 = self.subtype == "PCM_16"
        total = 0
        while True:
            want = -1 if block_frames is None else block_frames
            if self._limit is not None:
                want = self._limit - total if want < 0 else min(want, self._limit - total)
            if want == 0:
                break
            try:
                data = self._f.read(want, dtype="int16" if pcm16 else "float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as err:
                raise _unreadable(self.label, err) from None
            if data.shape[0] == 0:
                break
            total += data.shape[0]
            if self.max_seconds is not None and total > self.max_seconds * self.samplerate:
                raise AudioReadError(self.label, f"longer than the limit of {self.max_seconds:g} s")
            yield _mono(data, pcm16, self.label)
            if block_frames is None:
                break
        if total == 0:
            raise AudioReadError(self.label, "no audio frames")

    def rewind(self) -> None:
        """Back to the first frame (a second pass over the file)."""
        try:
            self._f.seek(0)
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as err:
            raise _unreadable(self.label, err) from None


def _mono(data: np.ndarray, pcm16: bool, label: Path | str) -> np.ndarray:
    """``(frames, channels)`` int16 or float32 -> ``(frames,)`` float32, finite."""
    if pcm16:
        data = data.astype(np.float32) * np.float32(1 / 32768)
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not pcm16 and not np.isfinite(mono).all():
        raise AudioReadError(label, "samples contain NaN or infinity")
    return np.ascontiguousarray(mono, dtype=np.float32)


@contextmanager
def open_audio(
    path: Path | str | BinaryIO, name: str | None = None, max_seconds: float | None = None
) -> Iterator[AudioStream]:
    """Opens any file soundfile reads, to decode it in blocks (`AudioStream.blocks`).

    Args:
        path: a path, or an open binary file (bytes sent to a server).
        name: how errors name a file-like source (default `SENT_AUDIO`).
        max_seconds: refuse a longer file, from its header, before decoding it.

    Raises:
        AudioReadError: the file is missing, not a regular file (a directory, a FIFO, a
            device), unreadable or too long; decoding raises it too (see `blocks`).
    """
    with ExitStack() as stack:
        if hasattr(path, "read"):
            label: Path | str = name or SENT_AUDIO
            source: BinaryIO | int = path
        else:
            label = path
            # The descriptor, not the file object: libsndfile reads it natively.
            source = stack.enter_context(open_regular_file(path)).fileno()
        try:
            f = stack.enter_context(sf.SoundFile(source, closefd=False))
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as err:
            raise _unreadable(label, err) from None
        yield AudioStream(f, label, max_seconds)


def read_audio(
    path: Path | str | BinaryIO, name: str | None = None, max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """Reads any file soundfile reads, whole, as mono float32 in [-1, 1].

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
    with open_audio(path, name, max_seconds) as audio:
        (samples,) = audio.blocks(None)
        return samples, audio.samplerate


class SilenceScan:
    """The loudness of a signal fed in blocks: its length, peak, energy and frame RMS.

    The energy of every `SILENCE_HOP` samples of the centred (zero-padded) signal is
    kept, and a frame's is the sum of its four hops', so the frames, and the non-silent
    intervals found from them, are the same whatever the blocks were (bit for bit).
    """

    def __init__(self) -> None:
        self.length = 0
        self.peak = 0.0
        self._rest = np.zeros(SILENCE_FRAME // 2)  # the centring pad, then a partial hop
        self._hops: list[np.ndarray] = []
        self._done: tuple[np.ndarray, float] | None = None

    def add(self, block: np.ndarray) -> None:
        """Feeds the next ``(samples,)`` of the signal."""
        if self._done is not None:
            raise ValueError("add after the scan was read")
        if len(block) == 0:
            return
        self.length += len(block)
        self.peak = max(self.peak, float(np.abs(block).max()))
        x = np.concatenate([self._rest, block.astype(np.float64)])
        whole = len(x) // SILENCE_HOP * SILENCE_HOP
        self._hops.append(np.square(x[:whole]).reshape(-1, SILENCE_HOP).sum(axis=1))
        self._rest = x[whole:]

    def _finish(self) -> tuple[np.ndarray, float]:
        """(energy per whole hop of the padded signal, energy of the partial hop left);
        the end's centring pad is added on the first call, after which nothing is fed."""
        if self._done is None:
            x = np.concatenate([self._rest, np.zeros(SILENCE_FRAME // 2)])
            whole = len(x) // SILENCE_HOP * SILENCE_HOP
            self._hops.append(np.square(x[:whole]).reshape(-1, SILENCE_HOP).sum(axis=1))
            self._done = (np.concatenate(self._hops), float(np.square(x[whole:]).sum()))
        return self._done

    @property
    def rms(self) -> float:
        """The signal's root mean square (0 when it is empty)."""
        hops, rest = self._finish()
        return float(np.sqrt((hops.sum() + rest) / self.length)) if self.length else 0.0

    def frame_rms_db(self) -> np.ndarray:
        """RMS per frame in dB relative to full scale, shape ``(n_frames,)``.

        Frames are centred as in librosa (``frame_length=2048, hop_length=512``).
        """
        hops, _ = self._finish()
        n = 1 + self.length // SILENCE_HOP
        power = (hops[:n] + hops[1 : n + 1]) + (hops[2 : n + 2] + hops[3 : n + 3])
        return 10.0 * np.log10(np.maximum(power / SILENCE_FRAME, 1e-20))

    def nonsilent(self, top_db: float) -> np.ndarray:
        """Sample intervals louder than ``top_db`` below the loudest frame (`find_nonsilent`)."""
        if top_db <= 0:
            raise ValueError(f"top_db must be positive, got {top_db!r}")
        if self.length == 0 or self.peak == 0:
            return np.zeros((0, 2), dtype=np.int64)
        db = self.frame_rms_db()
        loud = db > db.max() - top_db
        edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(np.int8), [0]])))
        frames = edges.reshape(-1, 2)
        intervals = np.minimum(frames * SILENCE_HOP, self.length).astype(np.int64)
        return intervals[intervals[:, 1] > intervals[:, 0]]


def scan_silence(samples: np.ndarray) -> SilenceScan:
    """A `SilenceScan` of a whole signal ``(samples,)``."""
    scan = SilenceScan()
    scan.add(samples)
    return scan


def frame_rms_db(samples: np.ndarray) -> np.ndarray:
    """RMS per frame in dB relative to full scale, shape ``(n_frames,)``.

    Frames are centred as in librosa (``frame_length=2048, hop_length=512``).
    """
    return scan_silence(samples).frame_rms_db()


def find_nonsilent(samples: np.ndarray, top_db: float) -> np.ndarray:
    """Sample intervals louder than ``top_db`` below the clip's loudest frame.

    Same rule as ``librosa.effects.split(y, top_db=top_db)``; audiotag's threshold
    is ``MelSettings.silence_top_db``. A long file is scanned in blocks instead
    (`SilenceScan`), with the same result.

    Args:
        samples: ``(samples,)`` mono audio.
        top_db: frames this many dB below the loudest frame are silence; positive.

    Returns:
        int64 array ``(n_intervals, 2)`` of ``[start, end)`` sample indices;
        empty when the clip is all silence (digital zero).
    """
    if top_db <= 0:
        raise ValueError(f"top_db must be positive, got {top_db!r}")
    return scan_silence(samples).nonsilent(top_db)


def remove_silence(samples: np.ndarray, intervals: np.ndarray) -> np.ndarray:
    """Concatenates the non-silent intervals (the whole clip when none is given)."""
    if len(intervals) == 0:
        return samples
    return np.concatenate([samples[s:e] for s, e in intervals])


def cut_silence(blocks: Iterable[np.ndarray], intervals: np.ndarray) -> Iterator[np.ndarray]:
    """`remove_silence` of a signal given in blocks: each block's non-silent part."""
    if len(intervals) == 0:
        yield from blocks
        return
    pos = 0
    for block in blocks:
        end = pos + len(block)
        inside = intervals[(intervals[:, 1] > pos) & (intervals[:, 0] < end)]
        parts = [block[max(s, pos) - pos : min(e, end) - pos] for s, e in inside]
        if parts:
            yield np.concatenate(parts) if len(parts) > 1 else parts[0]
        pos = end
