"""Clips: events of the labelled classes mixed at random times, encoded as WAV."""

import io

import numpy as np
import soundfile as sf

from audiotag.sources.demo.synthesis import _SYNTHS, SAMPLE_RATE, _NoiseBank, _place

_PEAK_DBFS = (-30.0, -6.0)  # range of each event's peak level
# Half an LSB, the level of 16-bit dither: keeps "silence" from being exact
# zeros (as real recordings rarely are) while still reading as a clean
# recording, and compresses far better than a louder floor would.
_CLEAN_FLOOR_RMS = 0.5 / 32767


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
