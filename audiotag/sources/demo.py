"""Deterministic synthetic dataset packaged exactly like Kaggle's FAT2019 download.

The tool's embedded demo must run offline and in seconds, yet exercise every code
path the real "Freesound Audio Tagging 2019" data does: the competition zip with
inner per-split zips, ``fname,labels`` CSVs with comma-joined multi-labels, a
noisy split with background noise and wrong labels, the curated files Kaggle
users know to be corrupt, and a few genuinely broken files. Ten FAT2019 classes
are rendered as synthetic sounds that occupy different frequency regions and
temporal patterns, so a small CNN on 64-band log-mel spectrograms can learn them.

Everything is drawn from one ``np.random.default_rng(seed)`` stream and zipped
with fixed timestamps in sorted order, so one seed always yields identical bytes.
The WAVs are deflated inside the inner zips (as in Kaggle's download), and the
outer zip stores those inner zips as they are and deflates only the CSVs.

At ``scale=1`` the audio is about an hour of 44.1 kHz 16-bit sound (the noisy
split alone is 500 clips of 3-8 s), so the zip is about 220 MB and takes about
10 s on two cores; use a smaller ``scale`` for tests.
"""

import csv
import io
import queue
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Self

import numpy as np
import soundfile as sf

# One definition of each: the pipeline drops these names, so the demo holds them.
from audiotag.data.layout import COMPETITION
from audiotag.data.layout import KAGGLE_CORRUPT_FILES as KAGGLE_CORRUPT_CURATED

__all__ = [
    "COMPETITION",
    "DEMO_CLASSES",
    "KAGGLE_CORRUPT_CURATED",
    "SAMPLE_RATE",
    "write_demo_dataset",
]

SAMPLE_RATE = 44_100

# Real FAT2019 label names, spelled as Kaggle's CSV headers spell them, and
# kept in Python's sorted order because that is the column order of Kaggle's
# sample_submission.csv.
DEMO_CLASSES: tuple[str, ...] = (
    "Accordion",
    "Bass_drum",
    "Bicycle_bell",
    "Chirp_and_tweet",
    "Church_bell",
    "Cricket",
    "Hi-hat",
    "Mechanical_fan",
    "Tick-tock",
    "Whistling",
)

# The curated split's truncated file keeps only this much of a valid WAV: the
# RIFF header and the start of the fmt chunk, so no decoder can open it.
TRUNCATED_HEADER_BYTES = 20

_N_CURATED = 250
_N_NOISY = 500
_N_TEST = 150
_CURATED_SECONDS = (0.5, 4.0)
_NOISY_SECONDS = (2.0, 6.0)
_TEST_SECONDS = (0.5, 5.0)
_LABEL_COUNT_P = (0.67, 0.25, 0.08)  # probabilities of 1, 2, 3 labels per clip
_PEAK_DBFS = (-30.0, -6.0)
_NOISY_SNR_DB = (5.0, 20.0)
_NOISY_WRONG_LABEL_FRACTION = 0.2
# Half an LSB, the level of 16-bit dither: keeps "silence" from being exact
# zeros (as real recordings rarely are) while still reading as a clean
# recording, and compresses far better than a louder floor would.
_CLEAN_FLOOR_RMS = 0.5 / 32767
# Any fixed date works; this one is when FAT2019 opened, and zip timestamps
# must not come from the clock or the bytes would differ between runs.
_ZIP_DATE_TIME = (2019, 4, 1, 0, 0, 0)

# --------------------------------------------------------------------------- helpers


def _seconds(n: int) -> np.ndarray:
    return np.arange(n) / SAMPLE_RATE


def _event_len(rng: np.random.Generator, max_n: int, lo_s: float, hi_s: float) -> int:
    """Draws an event length in samples, never longer than the clip."""
    return max(1, min(max_n, int(rng.uniform(lo_s, hi_s) * SAMPLE_RATE)))


def _jitter(rng: np.random.Generator, value: float, rel: float = 0.2) -> float:
    """Scales ``value`` by a uniform factor in ``[1 - rel, 1 + rel]``."""
    return value * rng.uniform(1.0 - rel, 1.0 + rel)


def _fade(x: np.ndarray, attack_s: float, release_s: float) -> np.ndarray:
    """Applies linear fades so sustained sounds do not start or stop with a click."""
    n = len(x)
    a = min(n // 2, max(1, int(attack_s * SAMPLE_RATE)))
    r = min(n - a, max(1, int(release_s * SAMPLE_RATE)))
    env = np.ones(n)
    env[:a] = np.linspace(0.0, 1.0, a, endpoint=False)
    if r > 0:
        env[n - r :] = np.linspace(1.0, 0.0, r)
    return x * env


def _sine(freq: float, n: int, decay_s: float | None = None) -> np.ndarray:
    """Returns ``sin(2 pi freq t)``, times ``exp(-t / decay_s)`` if given.

    Evaluated as a complex exponential: one 4096-sample block directly, the
    rest by scaling that block by each block's start value. That is about ten
    times faster than ``np.sin`` and ``np.exp`` over the whole length, and the
    bells and hums that use it dominated the run time.
    """
    rate = complex(-1.0 / decay_s if decay_s else 0.0, 2 * np.pi * freq) / SAMPLE_RATE
    block = max(1, min(n, 4096))
    head = np.exp(rate * np.arange(block))
    starts = np.exp(rate * block * np.arange(-(-n // block)))
    return (starts[:, None] * head[None, :]).ravel()[:n].imag


def _shaped_noise(rng: np.random.Generator, n: int, gain: np.ndarray) -> np.ndarray:
    """White noise of ``n`` samples (a power of two) shaped by an rfft-bin gain, unit RMS."""
    out = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * gain, n)
    return out / np.sqrt(np.mean(out**2))


class _NoiseBank:
    """Long stretches of filtered noise that events and backgrounds cut pieces from.

    Filtering fresh noise for every event costs one large FFT per call (most of
    the run time at first); a few long filtered recordings, sliced at random
    offsets with random sign, sound the same and cost a handful of FFTs.
    """

    # 2**21 samples = 47.6 s: a power of two for a fast FFT, and longer than
    # any clip, so a slice never wraps.
    LENGTH = 1 << 21

    def __init__(self, rng: np.random.Generator) -> None:
        freqs = np.fft.rfftfreq(self.LENGTH, 1.0 / SAMPLE_RATE)

        def band(lo_hz: float, hi_hz: float) -> np.ndarray:
            # A brick-wall mask is a crude filter, but every use is enveloped
            # or mixed afterwards, and it keeps synthesis numpy-only.
            return ((freqs >= lo_hz) & (freqs <= hi_hz)).astype(float)

        # Below 20 Hz the 1/f rise would only add inaudible DC drift.
        inv_f = 1.0 / np.maximum(freqs, 20.0)
        self._banks = {
            "hiss": _shaped_noise(rng, self.LENGTH, band(7000.0, 16000.0)),
            "rumble": _shaped_noise(rng, self.LENGTH, band(80.0, 900.0)),
            "breath": _shaped_noise(rng, self.LENGTH, band(800.0, 3000.0)),
            "pink": _shaped_noise(rng, self.LENGTH, np.sqrt(inv_f)),
            "brown": _shaped_noise(rng, self.LENGTH, inv_f),
        }

    def take(self, rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
        """Returns ``n`` samples of unit-RMS noise of ``kind`` from a random offset.

        Raises:
            ValueError: If ``n`` exceeds the bank length.
        """
        if n > self.LENGTH:
            raise ValueError(f"noise of {n} samples requested, bank holds {self.LENGTH}")
        start = int(rng.integers(0, self.LENGTH - n + 1))
        sign = 1.0 if rng.random() < 0.5 else -1.0
        return sign * self._banks[kind][start : start + n]


_Synth = Callable[[np.random.Generator, _NoiseBank, int], np.ndarray]


def _place(dest: np.ndarray, src: np.ndarray, start: int) -> None:
    """Adds ``src`` into ``dest`` at ``start``, cutting what overhangs the end."""
    end = min(len(dest), start + len(src))
    if end > start:
        dest[start:end] += src[: end - start]


# --------------------------------------------------------------------------- classes
# Each synth returns an event of at most ``max_n`` samples at arbitrary scale;
# the caller normalises its peak and chooses loudness and placement. Frequency
# regions are kept apart (sub-200 Hz, low-mid, 1-3 kHz, 3-8 kHz, above 7 kHz)
# and temporal patterns differ (sustained, sparse hits, regular ticks, pulse
# trains, sweeps), so that both mel band and time structure separate classes.


def _accordion(rng: np.random.Generator, noise: _NoiseBank, max_n: int) -> np.ndarray:
    """Sustained reed tone near 262 Hz with rich harmonics and bellows swell."""
    n = _event_len(rng, max_n, 0.4, 3.0)
    f0 = _jitter(rng, 262.0)
    # Two slightly detuned reeds beat against each other: the accordion "musette".
    detune = 1.0 + rng.uniform(0.002, 0.006)
    # The pitch is steady, so one period is tabulated and read back at the
    # reed's rate: two table lookups instead of twenty full-length sines.
    table_len = 4096
    grid = 2 * np.pi * np.arange(table_len) / table_len
    x = np.zeros(n)
    for freq, gain in ((f0, 1.0), (f0 * detune, 0.7)):
        phases = rng.uniform(0, 2 * np.pi, 10)
        table = sum(np.sin(k * grid + phases[k - 1]) / k for k in range(1, 11))
        idx = (np.arange(n) * (freq * table_len / SAMPLE_RATE)).astype(np.int64) % table_len
        x += gain * table[idx]
    swell = 1.0 - 0.3 * (0.5 + 0.5 * _sine(rng.uniform(0.5, 1.5), n))
    return _fade(x * swell, 0.06, 0.1)


def _bass_drum(rng: np.random.Generator, noise: _NoiseBank, max_n: int) -> np.ndarray:
    """One to four kick hits: a sine falling from ~150 Hz to ~55 Hz, fast decay."""
    n = _event_len(rng, max_n, 0.3, 2.5)
    x = np.zeros(n)
    hit_n = int(0.45 * SAMPLE_RATE)
    t = _seconds(hit_n)
    interval = rng.uniform(0.25, 0.6)
    n_hits = int(rng.integers(1, 5))
    for i in range(n_hits):
        start = int(i * _jitter(rng, interval, 0.1) * SAMPLE_RATE)
        if start >= n:
            break
        f_end = _jitter(rng, 55.0)
        f = f_end + (_jitter(rng, 150.0) - f_end) * np.exp(-t / 0.035)
        phase = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
        hit = np.sin(phase) * np.exp(-t / rng.uniform(0.1, 0.22))
        _place(x, hit * rng.uniform(0.7, 1.0), start)
    return x


def _bicycle_bell(rng: np.random.Generator, noise: _NoiseBank, max_n: int) -> np.ndarray:
    """One to three rings of bright inharmonic partials from ~2.6 kHz, with rattle."""
    n = _event_len(rng, max_n, 0.4, 2.0)
    x = np.zeros(n)
    f0 = _jitter(rng, 2600.0)
    ring_n = int(0.5 * SAMPLE_RATE)
    ring = np.zeros(ring_n)
    for ratio, amp, decay in ((1.0, 1.0, 0.35), (1.47, 0.6, 0.25), (2.09, 0.4, 0.18)):
        ring += amp * _sine(f0 * ratio, ring_n, decay)
    # The clapper strikes the dome repeatedly; that ~25 Hz flutter is what
    # makes a bicycle bell sound like one rather than a single "ding".
    ring *= 0.6 + 0.4 * np.abs(_sine(rng.uniform(20.0, 30.0), ring_n))
    period = rng.uniform(0.2, 0.35)
    for i in range(int(rng.integers(1, 4))):
        start = int(i * period * SAMPLE_RATE)
        if start >= n:
            break
        _place(x, ring, start)
    return x


def _chirp_and_tweet(rng: np.random.Generator, noise: _NoiseBank, max_n: int) -> np.ndarray:
    """Groups of fast upward sweeps from ~3 kHz, each 40-100 ms."""
    n = _event_len(rng, max_n, 0.3, 2.0)
    x = np.zeros(n)
    pos = 0
    while pos < n:
        chirp_n = int(rng.uniform(0.04, 0.1) * SAMPLE_RATE)
        t = _seconds(chirp_n)
        f_lo = _jitter(rng, 3000.0)
        f_hi = f_lo * rng.uniform(1.5, 2.2)
        # Exponential sweep: bird-like, and a straight line on a mel axis.
        f = f_lo * (f_hi / f_lo) ** (t / t[-1])
        chirp = np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE) * np.hanning(chirp_n)
        _place(x, chirp, pos)
        pos += chirp_n + int(rng.uniform(0.04, 0.15) * SAMPLE_RATE)
    return x


def _church_bell(rng: np.random.Generator, noise: _NoiseBank, max_n: int) -> np.ndarray:
    """Low bell strikes (~440 Hz strike note) with long, ringing decays."""
    n = _event_len(rng, max_n, 0.8, 4.0)
    x = np.zeros(n)
    f0 = _jitter(rng, 440.0)
    strike_n = min(n, int(2.5 * SAMPLE_RATE))
    strike = np.zeros(strike_n)
    # Classic bell partials (hum, prime, minor third, fifth, octave, ...):
    # the minor third is what makes a church bell sound mournful.
    partials = (
        (0.5, 0.6, 1.6),
        (1.0, 1.0, 1.1),
        (1.2, 0.5, 0.8),
        (1.5, 0.35, 0.6),
        (2.0, 0.3, 0.5),
        (2.5, 0.2, 0.35),
        (2.67, 0.15, 0.3),
    )
    for ratio, amp, decay in partials:
        strike += amp * _sine(f0 * ratio, strike_n, decay)
    period = rng.uniform(0.8, 1.5)
    for i in range(int(rng.integers(1, 4))):
        start = int(i * period * SAMPLE_RATE)
        if start >= n:
            break
        _place(x, strike, start)
    return x


def _cricket(rng: np.random.Generator, noise: _NoiseBank, max_n: int) -> np.ndarray:
    """Steady ~4.8 kHz carrier in trains of 3-5 pulses, trains every 0.3-0.5 s."""
    n = _event_len(rng, max_n, 0.4, 3.0)
    carrier = _sine(_jitter(rng, 4800.0, 0.15), n)
    gate = np.zeros(n)
    pulse_n = int(0.012 * SAMPLE_RATE)
    pulse = np.hanning(pulse_n)
    pulse_gap = int(SAMPLE_RATE / rng.uniform(40.0, 60.0))
    train_gap = int(rng.uniform(0.3, 0.5) * SAMPLE_RATE)
    n_pulses = int(rng.integers(3, 6))
    pos = 0
    while pos < n:
        for i in range(n_pulses):
            _place(gate, pulse, pos + i * pulse_gap)
        pos += train_gap
    return carrier * gate


def _hi_hat(rng: np.random.Generator, noise: _NoiseBank, max_n: int) -> np.ndarray:
    """Regular eighth-note hits of noise above 7 kHz, short and metallic."""
    n = _event_len(rng, max_n, 0.4, 2.5)
    x = np.zeros(n)
    step = int(rng.uniform(0.12, 0.25) * SAMPLE_RATE)
    hit_n = int(0.2 * SAMPLE_RATE)
    t = _seconds(hit_n)
    for start in range(0, n, step):
        # An occasional open hat rings longer, as drummers play them.
        decay = rng.uniform(0.06, 0.1) if rng.random() < 0.15 else rng.uniform(0.015, 0.035)
        hit = noise.take(rng, "hiss", hit_n) * np.exp(-t / decay)
        _place(x, hit * rng.uniform(0.6, 1.0), start)
    return x


def _mechanical_fan(rng: np.random.Generator, noise: _NoiseBank, max_n: int) -> np.ndarray:
    """Continuous low rumble (80-900 Hz) plus a blade-pass hum near 100 Hz."""
    n = _event_len(rng, max_n, 0.8, 6.0)
    rumble = noise.take(rng, "rumble", n)
    blade = _jitter(rng, 100.0)
    hum = sum(_sine(k * blade, n) / k for k in (1, 2, 3))
    # Blades passing the housing modulate the airflow at the rotation rate.
    wobble = 1.0 + 0.2 * _sine(rng.uniform(8.0, 16.0), n)
    return _fade((0.8 * rumble + 0.25 * hum) * wobble, 0.15, 0.15)


def _tick_tock(rng: np.random.Generator, noise: _NoiseBank, max_n: int) -> np.ndarray:
    """Clock ticks every ~0.5 s, alternating a higher "tick" and lower "tock"."""
    n = _event_len(rng, max_n, 0.6, 4.0)
    x = np.zeros(n)
    period = int(_jitter(rng, 0.5) * SAMPLE_RATE)
    click_n = int(0.02 * SAMPLE_RATE)
    f_tick = _jitter(rng, 2500.0, 0.1)
    clicks = []
    for f in (f_tick, f_tick * 0.6):
        # A damped resonance plus a broadband transient reads as a hard click.
        click = _sine(f, click_n, 0.003)
        click[:20] += rng.uniform(-1.0, 1.0, 20)
        clicks.append(click)
    for i, start in enumerate(range(int(rng.uniform(0, 0.1) * SAMPLE_RATE), n, period)):
        _place(x, clicks[i % 2], start)
    return x


def _whistling(rng: np.random.Generator, noise: _NoiseBank, max_n: int) -> np.ndarray:
    """Near-pure tone around 1.2 kHz gliding between notes, with vibrato and breath."""
    n = _event_len(rng, max_n, 0.5, 3.0)
    base = _jitter(rng, 1200.0)
    # A short melody: notes on a pentatonic-ish grid, joined by portamento.
    n_notes = max(1, round(n / SAMPLE_RATE / rng.uniform(0.2, 0.5)))
    notes = base * 2 ** (rng.choice([0, 2, 4, 7, 9, 12], n_notes) / 12)
    f = np.interp(np.linspace(0, n_notes - 1, n), np.arange(n_notes), notes)
    f *= 1.0 + 0.015 * _sine(rng.uniform(5.0, 6.5), n)
    phase = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
    x = np.sin(phase) + 0.08 * np.sin(2 * phase)
    x += 0.03 * noise.take(rng, "breath", n)
    return _fade(x, 0.05, 0.08)


_SYNTHS: dict[str, _Synth] = dict(
    zip(
        DEMO_CLASSES,
        (
            _accordion,
            _bass_drum,
            _bicycle_bell,
            _chirp_and_tweet,
            _church_bell,
            _cricket,
            _hi_hat,
            _mechanical_fan,
            _tick_tock,
            _whistling,
        ),
        strict=True,
    )
)


# --------------------------------------------------------------------------- clips


def _render_clip(
    rng: np.random.Generator,
    noise: _NoiseBank,
    labels: list[str],
    seconds: tuple[float, float],
    snr_db: tuple[float, float] | None,
) -> np.ndarray:
    """Mixes one event per label at random times into a clip.

    Args:
        rng: Shared random stream.
        noise: Noise source for events and background.
        labels: Classes sounding in the clip.
        seconds: Range of the clip duration.
        snr_db: Range of the background-noise SNR; ``None`` for a clean clip.

    Returns:
        Float samples in ``[-1, 1]``.
    """
    n = int(rng.uniform(*seconds) * SAMPLE_RATE)
    clip = np.zeros(n)
    active = np.zeros(n, dtype=bool)
    for label in labels:
        event = _SYNTHS[label](rng, noise, n)
        peak = np.abs(event).max()
        if peak > 0:
            event = event / peak * 10 ** (rng.uniform(*_PEAK_DBFS) / 20)
        start = int(rng.integers(0, n - len(event) + 1))
        _place(clip, event, start)
        active[start : start + len(event)] = True
    if snr_db is None:
        clip += _CLEAN_FLOOR_RMS * rng.standard_normal(n)
    else:
        # SNR is measured where the sound is, not over the whole clip: else a
        # short event in a long clip would get an almost inaudible background.
        signal_rms = np.sqrt(np.mean(clip[active] ** 2))
        kind = "pink" if rng.random() < 0.5 else "brown"
        noise_rms = signal_rms / 10 ** (rng.uniform(*snr_db) / 20)
        clip += noise_rms * noise.take(rng, kind, n)
    peak = np.abs(clip).max()
    if peak > 0.98:
        # Summed events can exceed full scale; rescale rather than clip so the
        # spectrum stays free of distortion harmonics.
        clip *= 0.98 / peak
    return clip


def _wav_bytes(samples: np.ndarray) -> bytes:
    """Encodes float samples as 16-bit PCM mono WAV."""
    # Quantise here rather than in libsndfile so rounding and clipping are ours.
    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def _draw_labels(rng: np.random.Generator, primary: str) -> list[str]:
    """Returns ``primary`` plus 0-2 other distinct classes."""
    n_labels = int(rng.choice([1, 2, 3], p=_LABEL_COUNT_P))
    others = [c for c in DEMO_CLASSES if c != primary]
    extra = rng.choice(others, size=n_labels - 1, replace=False).tolist()
    return [primary, *extra]


def _corrupt_labels(rng: np.random.Generator, labels: list[str]) -> list[str]:
    """Replaces one label by a class the clip does not contain."""
    wrong = list(labels)
    idx = int(rng.integers(len(wrong)))
    candidates = [c for c in DEMO_CLASSES if c not in labels]
    wrong[idx] = str(rng.choice(candidates))
    return wrong


class _NameDrawer:
    """Draws unique 8-hex-digit file names, as Kaggle's are."""

    def __init__(self, rng: np.random.Generator, reserved: tuple[str, ...]) -> None:
        self._rng = rng
        self._used = set(reserved)

    def __call__(self) -> str:
        while True:
            name = f"{int(self._rng.integers(0, 2**32)):08x}.wav"
            if name not in self._used:
                self._used.add(name)
                return name


def _broken_files(rng: np.random.Generator, names: _NameDrawer) -> dict[str, bytes]:
    """Returns the broken and known-corrupt files that go into the curated split."""
    valid = _wav_bytes(np.zeros(SAMPLE_RATE // 10))
    broken = {
        names(): b"",
        names(): valid[:TRUNCATED_HEADER_BYTES],
        names(): _wav_bytes(np.zeros(SAMPLE_RATE)),
    }
    for name in KAGGLE_CORRUPT_CURATED:
        n = int(rng.uniform(0.2, 0.5) * SAMPLE_RATE)
        broken[name] = _wav_bytes(0.1 * rng.uniform(-1.0, 1.0, n))
    return broken


# --------------------------------------------------------------------------- packaging


def _zip_info(name: str, compress_type: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE_TIME)
    info.compress_type = compress_type
    info.create_system = 3  # fixed, so the archive does not depend on the host OS
    info.external_attr = 0o644 << 16
    return info


class _BackgroundZip:
    """Builds a deflated zip in memory on a worker thread.

    Deflating the audio takes about as long as synthesising it. zlib releases
    the GIL, so compressing clip ``i`` while the caller renders clip ``i + 1``
    roughly halves the wall time on two cores. Entries are written in the order
    they are added, which keeps the bytes deterministic.
    """

    def __init__(self, compress_type: int = zipfile.ZIP_DEFLATED) -> None:
        self._compress_type = compress_type
        self._buf = io.BytesIO()
        # Bounded so that a slow writer holds back rendering instead of
        # letting every rendered clip pile up in memory.
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=16)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="demo-zip", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._queue.put(None)
        self._thread.join()
        if exc_type is None and self._error is not None:
            raise self._error

    def add(self, name: str, data: bytes) -> None:
        """Queues one entry; blocks while the writer is more than 16 entries behind."""
        self._queue.put((name, data))

    def getvalue(self) -> bytes:
        """Returns the finished archive; valid only after the ``with`` block."""
        return self._buf.getvalue()

    def _run(self) -> None:
        try:
            with zipfile.ZipFile(self._buf, "w") as zf:
                while (item := self._queue.get()) is not None:
                    name, data = item
                    zf.writestr(_zip_info(name, self._compress_type), data, compresslevel=1)
        except BaseException as exc:  # re-raised in the caller's thread by __exit__
            self._error = exc
            # Keep consuming so the producer never blocks on a full queue.
            while self._queue.get() is not None:
                pass


def _make_split(
    rng: np.random.Generator,
    noise: _NoiseBank,
    names: _NameDrawer,
    n_clips: int,
    seconds: tuple[float, float],
    snr_db: tuple[float, float] | None = None,
    wrong_label_fraction: float = 0.0,
    extra_files: dict[str, bytes] | None = None,
    compress_type: int = zipfile.ZIP_DEFLATED,
) -> tuple[bytes, dict[str, list[str]]]:
    """Renders a split and zips it.

    Args:
        rng: Shared random stream.
        noise: Noise source for events and background.
        names: Unique file-name source shared by all splits.
        n_clips: Number of synthesised clips.
        seconds: Clip duration range.
        snr_db: Background-noise SNR range; ``None`` for clean clips.
        wrong_label_fraction: Share of clips whose label set gets one wrong label.
        extra_files: Ready-made files (the broken ones) to add to the zip; each
            gets one random label in the returned CSV labels.
        compress_type: How the WAVs are stored in the zip.

    Returns:
        ``(zip_bytes, labels)``: the split's zip with WAVs at its root, and the
        label lists keyed by file name, for every file in the zip.
    """
    extra_files = extra_files or {}
    # Round-robin primaries keep every class present even at small scales.
    primaries = {names(): DEMO_CLASSES[i % len(DEMO_CLASSES)] for i in range(n_clips)}
    labels = {name: [str(rng.choice(DEMO_CLASSES))] for name in extra_files}
    # Rendering in sorted-name order lets each clip go straight into the zip,
    # whose entries must be sorted for reproducible bytes.
    with _BackgroundZip(compress_type) as archive:
        for name in sorted(primaries.keys() | extra_files.keys()):
            if name in extra_files:
                archive.add(name, extra_files[name])
                continue
            true_labels = _draw_labels(rng, primaries[name])
            archive.add(name, _wav_bytes(_render_clip(rng, noise, true_labels, seconds, snr_db)))
            wrong = rng.random() < wrong_label_fraction
            labels[name] = _corrupt_labels(rng, true_labels) if wrong else true_labels
    return archive.getvalue(), labels


def _labels_csv(labels: dict[str, list[str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["fname", "labels"])
    for name in sorted(labels):
        writer.writerow([name, ",".join(sorted(labels[name]))])
    return buf.getvalue().encode()


def _sample_submission_csv(fnames: list[str]) -> bytes:
    classes = sorted(DEMO_CLASSES)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["fname", *classes])
    for name in sorted(fnames):
        writer.writerow([name, *([0] * len(classes))])
    return buf.getvalue().encode()


def write_demo_dataset(
    out_dir: Path, seed: int = 0, scale: float = 1.0, deflate: bool = True
) -> Path:
    """Writes a synthetic FAT2019-shaped competition zip.

    The archive holds ``train_curated.csv``, ``train_noisy.csv``,
    ``sample_submission.csv``, ``test_labels.csv`` (the test answers, which
    Kaggle never published but the demo needs for scoring) and the inner zips
    ``train_curated.zip``, ``train_noisy.zip`` and ``test.zip`` with WAV files at
    their root. ``train_curated`` also lists one empty file, one with a
    truncated header, one all-silent file and the six clips named in
    :data:`KAGGLE_CORRUPT_CURATED`.

    Args:
        out_dir: Directory to write into; created if missing.
        seed: Seed of the single random stream; equal seeds give identical bytes.
        scale: Multiplies the clip counts (250 curated, 500 noisy, 150 test).
        deflate: Deflate the WAVs as Kaggle's download does; ``False`` stores them
            (the same audio; about twice as fast to write and to unpack, for
            benchmarks on large synthetic datasets).

    Returns:
        Path of ``<out_dir>/freesound-audio-tagging-2019.zip``.

    Raises:
        ValueError: If ``scale`` is not positive.
    """
    if not scale > 0:  # also rejects NaN
        raise ValueError(f"scale must be > 0, got {scale!r}")
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    names = _NameDrawer(rng, KAGGLE_CORRUPT_CURATED)
    noise = _NoiseBank(rng)

    # A positive scale still yields at least one clip per split, so no inner
    # zip or CSV is ever empty.
    n_curated = max(1, round(_N_CURATED * scale))
    n_noisy = max(1, round(_N_NOISY * scale))
    n_test = max(1, round(_N_TEST * scale))

    wavs = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    curated_zip, curated_labels = _make_split(
        rng,
        noise,
        names,
        n_curated,
        _CURATED_SECONDS,
        extra_files=_broken_files(rng, names),
        compress_type=wavs,
    )
    noisy_zip, noisy_labels = _make_split(
        rng,
        noise,
        names,
        n_noisy,
        _NOISY_SECONDS,
        _NOISY_SNR_DB,
        _NOISY_WRONG_LABEL_FRACTION,
        compress_type=wavs,
    )
    test_zip, test_labels = _make_split(
        rng, noise, names, n_test, _TEST_SECONDS, compress_type=wavs
    )

    csvs = {
        "train_curated.csv": _labels_csv(curated_labels),
        "train_noisy.csv": _labels_csv(noisy_labels),
        "sample_submission.csv": _sample_submission_csv(list(test_labels)),
        "test_labels.csv": _labels_csv(test_labels),
    }
    inner_zips = {
        "train_curated.zip": curated_zip,
        "train_noisy.zip": noisy_zip,
        "test.zip": test_zip,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{COMPETITION}.zip"
    tmp = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(tmp, "w") as zf:
        for name in sorted(csvs | inner_zips):
            if name in csvs:
                zf.writestr(_zip_info(name, zipfile.ZIP_DEFLATED), csvs[name])
            else:
                # Already deflated per WAV (or stored by request); deflating here
                # would gain nothing.
                zf.writestr(_zip_info(name, zipfile.ZIP_STORED), inner_zips[name])
    # Rename last so an interrupted run never leaves a half-written zip under
    # the name a later run would trust.
    tmp.replace(path)
    return path
