"""G.711 μ-law <-> 16-bit linear PCM through numpy lookup tables.

Written by hand: the stdlib ``audioop`` module (``ulaw2lin``/``lin2ulaw``) was deprecated in
Python 3.11 and removed in 3.13. The tables follow the classic Sun/CCITT reference coder
(bias 0x84, clip 8159 on the 14-bit scale), table for table what ``audioop.ulaw2lin(..., 2)`` and
``audioop.lin2ulaw(..., 2)`` computed (a unit test compares all 256 and all 65536 values
while audioop still exists): decoding yields values in [-32124, 32124] (the 14-bit G.711
range shifted left by two bits).

Levels: G.711 puts the maximum sine at +3.17 dBm0, so a 0 dBm0 sine has a peak of about
``32124 * 10 ** (-3.17 / 20)`` ≈ 22300 in this scale (:data:`DBM0_PEAK`); the digital milliwatt
sequence of G.711 table 5 decodes to a 1 kHz sine of that level.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float64]

RATE = 8000
#: μ-law code for a zero sample (positive zero); a frame of it is digital silence.
ULAW_SILENCE = 0xFF
_BIAS = 0x84
_CLIP14 = 8159  # the clip level on the 14-bit scale
#: Peak amplitude (16-bit scale) of a 0 dBm0 sine.
DBM0_PEAK = 32124.0 * 10.0 ** (-3.17 / 20.0)
#: Mean power (per sample, 16-bit scale squared) of a 0 dBm0 sine.
DBM0_POWER = DBM0_PEAK * DBM0_PEAK / 2.0


def _decode_table() -> Int16Array:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _BIAS) << ((u & 0x70) >> 4)
    table = np.where(u & 0x80, _BIAS - t, t - _BIAS)
    return table.astype(np.int16)


def _encode_table() -> npt.NDArray[np.uint8]:
    """CPython's ``audioop.lin2ulaw`` for 16-bit samples: the sample is reduced to 14 bits
    (arithmetic shift), its magnitude clipped at 8159 and biased by 33, and the segment is the
    first whose upper end (0x3F << seg) holds it."""
    x = np.arange(65536, dtype=np.int32)
    x = np.where(x >= 32768, x - 65536, x) >> 2  # index = sample viewed as uint16
    negative = x < 0
    magnitude = np.minimum(np.abs(x), _CLIP14) + (_BIAS >> 2)
    segment_ends = np.array([(0x40 << seg) - 1 for seg in range(8)])
    segment = np.searchsorted(segment_ends, magnitude, side="left")
    code = (np.minimum(segment, 7) << 4) | ((magnitude >> (np.minimum(segment, 7) + 1)) & 0x0F)
    code = np.where(segment >= 8, 0x7F, code) ^ np.where(negative, 0x7F, 0xFF)
    table: npt.NDArray[np.uint8] = code.astype(np.uint8)
    return table


#: μ-law code -> int16 sample.
DECODE: Int16Array = _decode_table()
#: μ-law code -> sample as float64 (what the detector multiplies with; no per-frame cast).
DECODE_FLOAT: FloatArray = DECODE.astype(np.float64)
#: int16 sample (viewed as uint16) -> μ-law code.
ENCODE: npt.NDArray[np.uint8] = _encode_table()
for _table in (DECODE, DECODE_FLOAT, ENCODE):
    _table.setflags(write=False)


def decode(payload: bytes) -> Int16Array:
    """μ-law bytes -> int16 samples."""
    samples: Int16Array = DECODE[np.frombuffer(payload, dtype=np.uint8)]
    return samples


def encode(samples: npt.ArrayLike) -> bytes:
    """int16 samples (floats are rounded and clipped first) -> μ-law bytes."""
    arr = np.asarray(samples)
    if arr.dtype != np.int16:
        arr = np.clip(np.rint(arr), -32768, 32767).astype(np.int16)
    return bytes(ENCODE[arr.view(np.uint16)].tobytes())


def level_dbm0(samples: npt.ArrayLike) -> float:
    """Mean power of ``samples`` (16-bit scale) in dBm0; -inf-safe (floors at -200)."""
    arr = np.asarray(samples, dtype=np.float64)
    power = float(np.mean(arr * arr)) if arr.size else 0.0
    return 10.0 * float(np.log10(max(power / DBM0_POWER, 1e-20)))
