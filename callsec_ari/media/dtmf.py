"""DTMF tones in 20 ms μ-law frames: detection, the look-ahead tone filter, digits, leak scan.

Detection (:class:`FrameAnalyser`): the spectrum at the eight DTMF frequencies of one frame is
one matrix product with precomputed cosine/sine columns (the power a Goertzel filter per
frequency yields). A frame holds a key tone when (a) its level is above a minimum, (b) the
strongest low-group and strongest high-group frequency together hold most of the frame's
energy, (c) each holds a minimum share, (d) their levels differ by no more than the allowed
twist (reverse: low louder; forward: high louder) and (e) each dominates the runner-up of its
group. Three configurations run on the same spectrum: :data:`MAIN` decides what is flattened;
:data:`LEAK_SCAN`, more sensitive in every criterion, scans what is sent to the agent side;
:data:`EDGE` recognises the partly filled frames at a tone's edges for digit timing.

:class:`ToneFilter` holds ONE frame back: frame N is released when frame N+1 is known (or on
a deadline), and is flattened when N-1, N or N+1 holds a MAIN tone, so a tone's leading edge
is replaced before it is sent and a one-frame hang-over covers its trailing edge; a frame
released on a deadline (successor unknown) is flattened on any sign of a tone. Flattened frames
become μ-law silence or a flat -30 dBm0 440 Hz tone with continuous phase, both pre-encoded;
untouched frames are passed on as the very same bytes object.

Digits: a run of >= 2 consecutive frames of the same key (EDGE or better, at least one MAIN;
a 40 ms tone covers two frames at any alignment) ended by a frame without it is one press.
Leak scan: an output frame counts as a leaked tone frame when LEAK_SCAN sees a key in it and
in a neighbouring output frame (>= 40 ms of tone: what a receiver on the agent side could
decode; single-frame blips of speech are not counted). Keys are secrets: nothing here logs
them or puts them in an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, NamedTuple, TypeVar

import numpy as np

from callsec_ari.media import g711

LOW_HZ = (697.0, 770.0, 852.0, 941.0)
HIGH_HZ = (1209.0, 1336.0, 1477.0, 1633.0)
KEYS = ("123A", "456B", "789C", "*0#D")
FRAME = 160  # samples per 20 ms at 8 kHz
Replacement = Literal["silence", "tone"]
T = TypeVar("T")
#: float32 is plenty for 160 products of 16-bit samples, and a third faster than float64 here
_DECODE = g711.DECODE_FLOAT.astype(np.float32)


def key_frequencies(key: str) -> tuple[float, float]:
    """``'5'`` -> ``(770.0, 1336.0)``; ValueError (no key in the message) otherwise."""
    for row, keys in enumerate(KEYS):
        col = keys.find(key.upper()) if len(key) == 1 else -1
        if col >= 0:
            return LOW_HZ[row], HIGH_HZ[col]
    raise ValueError("not a DTMF key")


@dataclass(frozen=True, kw_only=True)
class DetectorConfig:
    min_level_dbm0: float         # frame power below this: no tone
    min_ratio: float              # (strongest low + strongest high) / frame energy
    min_each: float               # each of the two / frame energy
    max_reverse_twist_db: float   # low-group tone louder than the high-group one by at most
    max_forward_twist_db: float   # high-group tone louder than the low-group one by at most
    dominance: float              # strongest / runner-up within each group (power ratio)


#: What is flattened (with its neighbours) and what a digit needs at least once.
MAIN = DetectorConfig(min_level_dbm0=-42.0, min_ratio=0.6, min_each=0.1,
                      max_reverse_twist_db=6.0, max_forward_twist_db=10.0, dominance=4.0)
#: The independent scan of the output: more sensitive in every criterion; a frame counts as
#: leaked when it and a neighbour (>= 40 ms, a tone an agent-side receiver could decode)
#: show the same key.
LEAK_SCAN = DetectorConfig(min_level_dbm0=-50.0, min_ratio=0.55, min_each=0.08,
                           max_reverse_twist_db=8.0, max_forward_twist_db=12.0, dominance=3.0)
#: Partly filled frames at a tone's edges (a tone covering half a frame holds about half its
#: energy): they extend a digit's run, so a 40 ms tone at any alignment is two frames.
EDGE = DetectorConfig(min_level_dbm0=-50.0, min_ratio=0.3, min_each=0.05,
                      max_reverse_twist_db=12.0, max_forward_twist_db=14.0, dominance=2.0)

#: Bits of :meth:`FrameAnalyser.analyse`'s flags.
IS_MAIN, IS_LEAK, IS_EDGE = 1, 2, 4


class _Thresholds(NamedTuple):
    energy: float  # per sample
    ratio: float
    each: float
    reverse: float
    forward: float
    dominance: float

    @classmethod
    def of(cls, config: DetectorConfig) -> _Thresholds:
        return cls(g711.DBM0_POWER * 10.0 ** (config.min_level_dbm0 / 10.0), config.min_ratio,
                   config.min_each, 10.0 ** (config.max_reverse_twist_db / 10.0),
                   10.0 ** (config.max_forward_twist_db / 10.0), config.dominance)


class FrameAnalyser:
    """Classifies μ-law frames under the MAIN, LEAK_SCAN and EDGE configurations at once."""

    def __init__(self, main: DetectorConfig = MAIN, leak: DetectorConfig = LEAK_SCAN,
                 edge: DetectorConfig = EDGE) -> None:
        self._configs = ((IS_MAIN, _Thresholds.of(main)), (IS_LEAK, _Thresholds.of(leak)),
                         (IS_EDGE, _Thresholds.of(edge)))
        self._floor = min(th.energy for _, th in self._configs)
        self._min_ratio = min(th.ratio for _, th in self._configs)
        self._bases: dict[int, np.ndarray] = {}
        self._frame_basis = self._basis(FRAME)

    def _basis(self, length: int) -> np.ndarray:
        basis = self._bases.get(length)
        if basis is None:
            n = np.arange(length)[:, None]
            omega = 2.0 * np.pi * np.asarray(LOW_HZ + HIGH_HZ)[None, :] / g711.RATE
            basis = np.hstack([np.cos(omega * n), np.sin(omega * n)]).astype(np.float32)
            basis.setflags(write=False)
            self._bases[length] = basis
        return basis

    def analyse(self, payload: bytes) -> tuple[str | None, int]:
        """``(key, flags)`` of one μ-law frame: the key of the strongest low/high pair when any
        configuration accepts the frame (``None`` otherwise) and which ones do (IS_* bits)."""
        length = len(payload)
        if not length:
            return None, 0
        x = _DECODE.take(np.frombuffer(payload, np.uint8))  # (method calls: cheapest here)
        energy = float(x.dot(x))
        if energy < self._floor * length:
            return None, 0
        basis = self._frame_basis if length == FRAME else self._basis(length)
        c0, c1, c2, c3, c4, c5, c6, c7, s0, s1, s2, s3, s4, s5, s6, s7 = x.dot(basis).tolist()
        power = [c0 * c0 + s0 * s0, c1 * c1 + s1 * s1, c2 * c2 + s2 * s2, c3 * c3 + s3 * s3,
                 c4 * c4 + s4 * s4, c5 * c5 + s5 * s5, c6 * c6 + s6 * s6, c7 * c7 + s7 * s7]
        if (max(power[:4]) + max(power[4:])) * 2.0 < self._min_ratio * length * energy:
            return None, 0  # not even the loosest share: most speech and noise ends here
        return self._decide(power, energy, length)

    def _decide(self, power: list[float], energy: float, length: int) -> tuple[str | None, int]:
        lows, highs = power[:4], power[4:]
        low_sorted, high_sorted = sorted(lows), sorted(highs)
        lo, hi = low_sorted[3], high_sorted[3]
        if lo <= 0.0 or hi <= 0.0:
            return None, 0
        scale = 2.0 / (length * energy)
        lo_share, hi_share = lo * scale, hi * scale
        dominance = min(lo / max(low_sorted[2], 1e-30), hi / max(high_sorted[2], 1e-30))
        per_sample, twist = energy / length, hi / lo
        flags = 0
        for bit, th in self._configs:
            if (per_sample >= th.energy and lo_share + hi_share >= th.ratio
                    and lo_share >= th.each and hi_share >= th.each
                    and th.reverse * twist >= 1.0 and twist <= th.forward
                    and dominance >= th.dominance):
                flags |= bit
        return (KEYS[lows.index(lo)][highs.index(hi)] if flags else None), flags


class DigitTracker:
    """Frame classifications in stream order -> key presses (each reported once): a run of
    >= 2 frames of the same key (EDGE or better), at least one of them MAIN, ended by a frame
    without that key."""

    __slots__ = ("_has_main", "_key", "_length")

    def __init__(self) -> None:
        self._key: str | None = None
        self._length = 0
        self._has_main = False

    def feed(self, key: str | None, flags: int) -> str | None:
        """The key whose press ended with this frame, if one did."""
        if key is not None and key == self._key:
            self._length += 1
            self._has_main = self._has_main or bool(flags & IS_MAIN)
            return None
        done = self._key if self._length >= 2 and self._has_main else None
        self._key, self._length, self._has_main = key, int(key is not None), bool(flags & IS_MAIN)
        return done


class LeakCounter:
    """Counts output frames that LEAK_SCAN calls a tone and that a neighbour confirms (same
    key): a tone of >= 40 ms, what a receiver on the agent side could decode."""

    __slots__ = ("_counted", "_key", "count")

    def __init__(self) -> None:
        self._key: str | None = None
        self._counted = False
        self.count = 0

    def feed(self, key: str | None, flags: int) -> None:
        key = key if flags & IS_LEAK else None
        if key is not None and key == self._key:
            self.count += 1 if self._counted else 2
            self._counted = True
        else:
            self._counted = False
        self._key = key


class _Replacer:
    """Pre-encoded replacement frames: μ-law silence, or a flat tone with continuous phase."""

    TONE_HZ = 440
    TONE_DBM0 = -30.0
    _PERIOD = 200  # 440 Hz at 8 kHz repeats every 200 samples (11 cycles)

    def __init__(self, mode: Replacement) -> None:
        if mode not in ("silence", "tone"):
            raise ValueError("replacement must be 'silence' or 'tone'")
        self.mode = mode
        self._phase = 0
        self._silence: dict[int, bytes] = {}
        amplitude = g711.DBM0_PEAK * 10.0 ** (self.TONE_DBM0 / 20.0)
        t = np.arange(self._PERIOD + 4 * FRAME)
        self._tone = g711.encode(amplitude * np.sin(2.0 * np.pi * self.TONE_HZ * t / g711.RATE))

    def next(self, length: int) -> bytes:
        if self.mode == "silence" or length > 4 * FRAME:
            frame = self._silence.get(length)
            if frame is None:
                frame = self._silence[length] = bytes([g711.ULAW_SILENCE]) * length
            return frame
        start = self._phase
        self._phase = (start + length) % self._PERIOD
        return self._tone[start:start + length]


class Released(NamedTuple, Generic[T]):
    """A frame leaving the filter: ``payload`` is the input object itself when not flattened.
    ``digit`` is the key whose press ended with this frame (a secret: never log it)."""

    tag: T
    payload: bytes
    flattened: bool
    digit: str | None


class _Held(NamedTuple, Generic[T]):
    payload: bytes
    tag: T
    key: str | None
    flags: int
    gap: bool  # its predecessor is missing (lost packet, new stream)


class ToneFilter(Generic[T]):
    """One-frame look-ahead DTMF flattening (see the module doc). ``tag`` travels with each
    frame untouched (the relay keeps the packet and its arrival time there)."""

    def __init__(self, *, replacement: Replacement = "silence",
                 analyser: FrameAnalyser | None = None) -> None:
        self._analyser = analyser or FrameAnalyser()
        self._replacer = _Replacer(replacement)
        self._digits = DigitTracker()
        self._leaks = LeakCounter()
        self._held: _Held[T] | None = None
        self._prev_tone = False
        self._scanned: dict[bytes, tuple[str | None, int]] = {}
        self.frames_out = 0
        self.frames_flattened = 0
        self.digits_detected = 0

    @property
    def replacement(self) -> Replacement:
        return self._replacer.mode

    @property
    def holding(self) -> bool:
        return self._held is not None

    @property
    def leaked_tone_frames(self) -> int:
        return self._leaks.count

    def push(self, payload: bytes, tag: T, *, gap: bool = False) -> Released[T] | None:
        """Frame N+1 arrives: release the held frame N (if any) and hold N+1. ``gap``: frames
        between N and N+1 are missing, so neither is sure of its neighbour on that side."""
        key, flags = self._analyser.analyse(payload)
        held, self._held = self._held, _Held(payload, tag, key, flags, gap)
        if held is None:
            return None
        return self._release(held, bool(flags & IS_MAIN) or (gap and held.flags != 0))

    def push_before_held(self, payload: bytes, tag: T) -> Released[T]:
        """A frame that belongs before the held one arrives late: release it now."""
        held = self._held
        if held is None:
            raise ValueError("push_before_held needs a held frame")
        key, flags = self._analyser.analyse(payload)
        self._held = held._replace(gap=False)  # its predecessor is known now
        return self._release(_Held(payload, tag, key, flags, False), bool(held.flags & IS_MAIN))

    def flush(self) -> Released[T] | None:
        """Release the held frame without knowing its successor (a deadline or the end)."""
        held, self._held = self._held, None
        return None if held is None else self._release(held, None)

    def _release(self, frame: _Held[T], next_tone: bool | None) -> Released[T]:
        tone = bool(frame.flags & IS_MAIN)
        if next_tone is None:  # successor unknown: any sign of a tone in this frame counts
            next_tone = frame.flags != 0
        flatten = self._prev_tone or tone or next_tone or (frame.gap and frame.flags != 0)
        self._prev_tone = tone
        digit = self._digits.feed(frame.key, frame.flags)
        if digit is not None:
            self.digits_detected += 1
        self.frames_out += 1
        if flatten:
            self.frames_flattened += 1
            out = self._replacer.next(len(frame.payload))
            self._leaks.feed(*self._scan_replacement(out))
        else:
            out = frame.payload
            self._leaks.feed(frame.key, frame.flags)  # the same bytes as analysed on arrival
        return Released(frame.tag, out, flatten, digit)

    def _scan_replacement(self, frame: bytes) -> tuple[str | None, int]:
        found = self._scanned.get(frame)
        if found is None:
            found = self._scanned[frame] = self._analyser.analyse(frame)
        return found
