"""The demo's sounds: ten FAT2019 classes rendered as synthetic events.

Each class is a small generator over shared building blocks (fades, decaying
sines, a bank of long filtered noise recordings); :mod:`.clips` mixes their
events into clips. Every draw comes from the caller's ``np.random.Generator``,
so the sounds are as deterministic as the stream.
"""

from collections.abc import Callable

import numpy as np

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
