"""DTMF in audio: a Goertzel detector over 16-bit PCM WAVs, and tone generators for tests.

Used to prove that recordings and the agent's audio carry no key tones (and, as a control,
that they do when tones were sent in-band on purpose). Classic Goertzel with 205-sample blocks
at 8 kHz (bins ~39 Hz apart, all eight DTMF frequencies resolved), half-block hop, run over
every block at once with numpy.

A block counts as a key when (a) its level is above ``min_dbfs``, (b) the strongest low-group
and high-group frequencies together hold most of the block's energy, (c) neither of the two is
much weaker than the other (twist) and (d) each dominates the rest of its group. A key is
reported once per run of at least ``min_blocks`` such blocks (about 25 ms with the defaults).
"""

from __future__ import annotations

import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Int16Array = npt.NDArray[np.int16]

LOW_HZ = (697.0, 770.0, 852.0, 941.0)
HIGH_HZ = (1209.0, 1336.0, 1477.0, 1633.0)
KEYS = ("123A", "456B", "789C", "*0#D")
BLOCK = 205


def key_frequencies(key: str) -> tuple[float, float]:
    """``'5'`` -> ``(770.0, 1336.0)``."""
    for row, keys in enumerate(KEYS):
        col = keys.find(key.upper())
        if col >= 0:
            return LOW_HZ[row], HIGH_HZ[col]
    raise ValueError(f"not a DTMF key: {key!r}")


def read_wav(path: Path | str) -> tuple[FloatArray, int]:
    """Samples in [-1, 1] (first channel) and the sample rate of a 16-bit PCM WAV."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: {8 * wav.getsampwidth()}-bit samples, want 16-bit PCM")
        raw = wav.readframes(wav.getnframes())
        channels, rate = wav.getnchannels(), wav.getframerate()
    samples = np.frombuffer(raw, dtype="<i2").reshape(-1, channels)[:, 0]
    return samples.astype(np.float64) / 32768.0, rate


def write_wav(path: Path | str, samples: Int16Array, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())


def _blocks(samples: FloatArray, block: int, hop: int) -> FloatArray:
    if len(samples) < block:
        return np.zeros((0, block))
    count = 1 + (len(samples) - block) // hop
    index = np.arange(block)[None, :] + hop * np.arange(count)[:, None]
    frames: FloatArray = samples[index]
    return frames


def goertzel_ratios(frames: FloatArray, freqs: Sequence[float], rate: int) -> FloatArray:
    """Per block and frequency: the share of the block's energy at that frequency (0..~1)."""
    coeff = 2.0 * np.cos(2.0 * np.pi * np.asarray(freqs) / rate)
    s1 = np.zeros((frames.shape[0], len(freqs)))
    s2 = np.zeros_like(s1)
    for n in range(frames.shape[1]):
        s0 = frames[:, n, None] + coeff * s1 - s2
        s2, s1 = s1, s0
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    energy = np.sum(frames * frames, axis=1)[:, None]
    ratios: FloatArray = 2.0 * power / (frames.shape[1] * np.maximum(energy, 1e-12))
    return ratios


def _block_keys(frames: FloatArray, rate: int, min_dbfs: float) -> list[str | None]:
    ratios = goertzel_ratios(frames, LOW_HZ + HIGH_HZ, rate)
    low, high = ratios[:, :4], ratios[:, 4:]
    low_i, high_i = np.argmax(low, axis=1), np.argmax(high, axis=1)
    rows = np.arange(len(frames))
    lo, hi = low[rows, low_i], high[rows, high_i]
    low_2nd = np.sort(low, axis=1)[:, -2]
    high_2nd = np.sort(high, axis=1)[:, -2]
    level = 10.0 * np.log10(np.maximum(np.mean(frames * frames, axis=1), 1e-20))
    hit = ((level > min_dbfs) & (lo + hi > 0.6) & (lo > 0.12) & (hi > 0.12)
           & (lo > 4 * low_2nd) & (hi > 4 * high_2nd))
    return [KEYS[low_i[i]][high_i[i]] if hit[i] else None for i in range(len(frames))]


def detect_dtmf(
    samples: FloatArray, rate: int = 8000, *, min_dbfs: float = -40.0, min_blocks: int = 2,
) -> list[tuple[float, str]]:
    """``[(seconds from start, key), ...]`` for every key tone in ``samples`` ([-1, 1])."""
    hop = BLOCK // 2
    labels = _block_keys(_blocks(samples, BLOCK, hop), rate, min_dbfs)
    runs: list[list[int | str]] = []  # [key, first block, last block]
    for i, key in enumerate(labels):
        if key is None:
            continue
        # A run continues across a gap of at most two blocks (a glitch, not a pause).
        if runs and runs[-1][0] == key and i - int(runs[-1][2]) <= 3:
            runs[-1][2] = i
        else:
            runs.append([key, i, i])
    return [(int(start) * hop / rate, str(key)) for key, start, end in runs
            if int(end) - int(start) + 1 >= min_blocks]


def detect_dtmf_file(path: Path | str, *, min_dbfs: float = -40.0,
                     min_blocks: int = 2) -> list[tuple[float, str]]:
    samples, rate = read_wav(path)
    return detect_dtmf(samples, rate, min_dbfs=min_dbfs, min_blocks=min_blocks)


def tone(freqs: Sequence[float], duration_ms: int, rate: int = 8000,
         amplitude: float = 0.3) -> Int16Array:
    """A sum of pure sines (equal amplitude, peak ``amplitude`` of full scale), 16-bit."""
    t = np.arange(int(rate * duration_ms / 1000)) / rate
    wave_sum = sum((np.sin(2.0 * np.pi * f * t) for f in freqs), start=np.zeros_like(t))
    scaled = amplitude * 32767.0 * wave_sum / max(len(freqs), 1)
    return np.round(scaled).astype(np.int16)


def silence(duration_ms: int, rate: int = 8000) -> Int16Array:
    return np.zeros(int(rate * duration_ms / 1000), dtype=np.int16)


def dtmf_signal(keys: str, tone_ms: int = 100, gap_ms: int = 100, rate: int = 8000,
                amplitude: float = 0.3) -> Int16Array:
    """Key tones separated by silence, with ``gap_ms`` of silence before and after."""
    parts = [silence(gap_ms, rate)]
    for key in keys:
        parts += [tone(key_frequencies(key), tone_ms, rate, amplitude), silence(gap_ms, rate)]
    return np.concatenate(parts)
