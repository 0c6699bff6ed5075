"""Synthetic telephone signals for the media tests (8 kHz, int16 scale floats, numpy)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from callsec_ari.media import g711
from callsec_ari.media.dtmf import FRAME, key_frequencies

RATE = 8000
DIGITS = "0123456789*#ABCD"


def samples(ms: float) -> int:
    return round(RATE * ms / 1000.0)


def silence(ms: float) -> np.ndarray:
    return np.zeros(samples(ms))


def dtmf(key: str, ms: float, level_dbm0: float = -10.0, twist_db: float = 0.0,
         phase: float = 0.0) -> np.ndarray:
    """A key tone whose two components together have ``level_dbm0``; ``twist_db`` > 0 makes the
    high-group tone louder than the low-group one by that much."""
    low, high = key_frequencies(key)
    total = g711.DBM0_POWER * 10.0 ** (level_dbm0 / 10.0)
    ratio = 10.0 ** (twist_db / 10.0)  # power(high) / power(low)
    p_low = total / (1.0 + ratio)
    a_low, a_high = float(np.sqrt(2.0 * p_low)), float(np.sqrt(2.0 * p_low * ratio))
    t = np.arange(samples(ms)) / RATE
    return a_low * np.sin(2 * np.pi * low * t + phase) + a_high * np.sin(
        2 * np.pi * high * t + 1.7 * phase)


def dtmf_sequence(keys: str, tone_ms: Sequence[float], gap_ms: Sequence[float],
                  level_dbm0: float = -10.0, lead_ms: float = 0.0) -> np.ndarray:
    parts = [silence(lead_ms)]
    for key, on, off in zip(keys, tone_ms, gap_ms, strict=True):
        parts += [dtmf(key, on, level_dbm0), silence(off)]
    return np.concatenate(parts)


def speech_like(seconds: float, seed: int = 0, level_dbm0: float = -18.0) -> np.ndarray:
    """A voiced-speech stand-in: a harmonic series (pitch gliding 90-240 Hz with vibrato) shaped
    by three moving formants, a syllabic envelope, and a little breath noise."""
    rng = np.random.default_rng(seed)
    n = samples(seconds * 1000)
    t = np.arange(n) / RATE
    f0 = 150 + 60 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) \
        + 8 * np.sin(2 * np.pi * 5.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    formants = [(500 + 250 * np.sin(2 * np.pi * 1.3 * t + rng.uniform(0, 6)), 110.0),
                (1500 + 500 * np.sin(2 * np.pi * 0.9 * t + rng.uniform(0, 6)), 140.0),
                (2600 + 200 * np.sin(2 * np.pi * 0.6 * t), 200.0)]
    out = np.zeros(n)
    for k in range(1, 40):
        fk = k * f0
        gain = sum(np.exp(-0.5 * ((fk - fc) / bw) ** 2) / (1 + i) for i, (fc, bw)
                   in enumerate(formants)) + 0.05 / k
        out += np.where(fk < 3600, gain, 0.0) * np.sin(k * phase + rng.uniform(0, 6))
    envelope = 0.35 + 0.65 * np.abs(np.sin(2 * np.pi * 2.2 * t + rng.uniform(0, 6)))
    out = out * envelope + 0.02 * np.std(out) * rng.standard_normal(n)
    return scale_to(out, level_dbm0)


def noise(seconds: float, seed: int = 0, level_dbm0: float = -25.0,
          pink: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = samples(seconds * 1000)
    white = rng.standard_normal(n)
    if pink:
        spectrum = np.fft.rfft(white)
        spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
        white = np.fft.irfft(spectrum, n)
    return scale_to(white, level_dbm0)


def scale_to(signal: np.ndarray, level_dbm0: float) -> np.ndarray:
    power = float(np.mean(signal * signal)) or 1.0
    gain = float(np.sqrt(g711.DBM0_POWER * 10.0 ** (level_dbm0 / 10.0) / power))
    return signal * gain


def to_frames(signal: np.ndarray) -> list[bytes]:
    """μ-law frames of 160 samples (the tail padded with silence)."""
    pad = (-len(signal)) % FRAME
    encoded = g711.encode(np.concatenate([signal, np.zeros(pad)]))
    return [encoded[i:i + FRAME] for i in range(0, len(encoded), FRAME)]


def tone_frame_span(start_sample: int, length: int) -> range:
    """Indices of the frames that hold at least one sample of [start, start + length)."""
    return range(start_sample // FRAME, (start_sample + length - 1) // FRAME + 1)
