"""A pure DTMF digit collector: terminator, restart key, special keys, timeouts, de-duplication.

The collector never reads a clock and never schedules anything: the flow feeds it digits with
their timestamps and asks it which timeout to arm next (``timeout``). Keyed digits go straight
into a :class:`SensitiveDigits` holder (a fixed ``bytearray``, overwritten by ``wipe``); a
completed entry hands its holder over in :attr:`Result.digits`, so no ``str`` of the value exists
until its one consumer (vault, gateway, sealed sink, code check) takes it.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from enum import Enum
from typing import NoReturn

DTMF_KEYS = frozenset("0123456789*#ABCD")
#: The most digits :meth:`SensitiveDigits.prefix` (a card's IIN) / ``tail`` (last 4) show.
PREFIX_MAX = 6
TAIL_MAX = 4


class SensitiveDigits:
    """Keyed digits in a fixed, pre-allocated ``bytearray`` that is overwritten when done.

    ``repr``/``str`` show only the count; the object refuses to be pickled or copied.
    ``clear()`` restarts entry (the restart key); ``wipe()`` ends the holder's life. Checks and
    maskers read :meth:`view`, :meth:`prefix` (IIN) and :meth:`tail` (last 4). ``reveal()`` /
    ``take()`` return a ``str`` that Python cannot wipe: only the sinks (vault, gateway, sealed)
    and the code checks call them, at the moment they need the value.
    """

    __slots__ = ("_buffer", "_length", "_wiped")

    def __init__(self, capacity: int = 32) -> None:
        self._buffer = bytearray(capacity)
        self._length = 0
        self._wiped = False

    def append(self, digit: str) -> None:
        self._require_live()
        if len(digit) != 1 or not "0" <= digit <= "9":
            raise ValueError("not a single digit")
        if self._length >= len(self._buffer):
            raise ValueError("digit capacity reached")
        self._buffer[self._length] = ord(digit)
        self._length += 1

    def clear(self) -> None:
        """Forget the digits so far (overwritten); the holder stays usable."""
        self._require_live()
        self._zero()

    def wipe(self) -> None:
        """Overwrite every byte with zeros; the holder cannot be used afterwards."""
        self._zero()
        self._wiped = True

    def view(self) -> memoryview:
        """A read-only view of the digits (ASCII bytes), valid until the holder changes."""
        self._require_live()
        return memoryview(self._buffer)[: self._length].toreadonly()

    def same_as(self, other: SensitiveDigits) -> bool:
        """Equal digits (constant time, no copy): an entry confirmed by typing it twice."""
        return hmac.compare_digest(self.view(), other.view())

    def reveal(self) -> str:
        return str(self.view(), "ascii")

    def take(self) -> str:
        """``reveal()`` then ``wipe()``: hand the value to its one consumer."""
        value = self.reveal()
        self.wipe()
        return value

    def prefix(self, count: int) -> str:
        """The first ``count`` (at most 6: a card's IIN, for the brand) digits."""
        if not 0 <= count <= PREFIX_MAX:
            raise ValueError("a prefix shows at most 6 digits")
        return str(self.view()[:count], "ascii")

    def tail(self, count: int) -> str:
        """The last ``count`` (at most 4) digits, for a masked result."""
        if not 0 <= count <= TAIL_MAX:
            raise ValueError("a tail shows at most 4 digits")
        return str(self.view()[max(self._length - count, 0):], "ascii")

    @property
    def wiped(self) -> bool:
        return self._wiped

    def __len__(self) -> int:
        return self._length

    def __repr__(self) -> str:
        state = "wiped" if self._wiped else f"{self._length} digits"
        return f"SensitiveDigits(<{state}>)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("SensitiveDigits cannot be pickled or copied")

    def _zero(self) -> None:
        for index in range(len(self._buffer)):
            self._buffer[index] = 0
        self._length = 0

    def _require_live(self) -> None:
        if self._wiped:
            raise RuntimeError("SensitiveDigits used after wipe()")


@dataclass(frozen=True, kw_only=True)
class CollectorSpec:
    min_digits: int = 1
    max_digits: int = 20
    terminator: str = "#"
    #: Key that discards what was typed so far (``None``: no restart key).
    restart_key: str | None = "*"
    #: Keys reported to the flow as :attr:`Outcome.SPECIAL` (e.g. ``*`` = resend the code).
    special_keys: frozenset[str] = frozenset()
    #: Complete as soon as ``max_digits`` are in, without waiting for the terminator.
    auto_complete: bool = False
    first_digit_timeout: float = 10.0
    inter_digit_timeout: float = 5.0
    #: Two ENDs of the same digit closer than this are one key press (re-queued END frames).
    dedup_window: float = 0.06


class Outcome(Enum):
    PROGRESS = "progress"      # a digit was added
    COMPLETE = "complete"      # terminator (or auto-complete / inter-digit timeout) ended entry
    RESTARTED = "restarted"    # restart key: entry cleared
    SPECIAL = "special"        # a special key was pressed (``Result.key``)
    IGNORED = "ignored"        # duplicate END, or a key with no meaning here
    TIMEOUT = "timeout"        # nothing (or too little) typed before the timeout


@dataclass(frozen=True, kw_only=True)
class Result:
    outcome: Outcome
    count: int = 0
    key: str = ""
    #: ``COMPLETE``: the entry's holder, now owned (and to be wiped) by the receiver.
    digits: SensitiveDigits = field(default_factory=lambda: SensitiveDigits(0), repr=False,
                                    compare=False)


class DigitCollector:
    """Collects one entry. Create a new one (or :meth:`reset`) per prompt."""

    def __init__(self, spec: CollectorSpec) -> None:
        self.spec = spec
        self._buf = SensitiveDigits(spec.max_digits + 1)
        self._last_key = ""
        self._last_at = float("-inf")
        self.done = False

    def __repr__(self) -> str:
        return f"DigitCollector(count={len(self._buf)}, done={self.done})"

    @property
    def count(self) -> int:
        return len(self._buf)

    @property
    def timeout(self) -> float:
        """Seconds to wait for the next key: first-digit before any digit, inter-digit after."""
        return self.spec.inter_digit_timeout if self._buf else self.spec.first_digit_timeout

    def feed(self, key: str, at: float) -> Result:
        if self.done or key not in DTMF_KEYS:
            return Result(outcome=Outcome.IGNORED, count=self.count)
        if key == self._last_key and at - self._last_at < self.spec.dedup_window:
            return Result(outcome=Outcome.IGNORED, count=self.count)
        self._last_key, self._last_at = key, at
        if key in self.spec.special_keys:
            return Result(outcome=Outcome.SPECIAL, key=key, count=self.count)
        if key == self.spec.restart_key:
            self.wipe()
            return Result(outcome=Outcome.RESTARTED)
        if key == self.spec.terminator:
            return self._complete()
        if not key.isdigit():
            return Result(outcome=Outcome.IGNORED, count=self.count)
        if len(self._buf) >= self.spec.max_digits:
            # One digit too many: finish so that validation reports "too long" at once.
            self._buf.append(key)
            return self._complete()
        self._buf.append(key)
        if self.spec.auto_complete and len(self._buf) >= self.spec.max_digits:
            return self._complete()
        return Result(outcome=Outcome.PROGRESS, count=self.count)

    def peek_prefix(self, count: int) -> str:
        """The first ``count`` (at most 6) digits: a card's IIN, which PCI DSS allows to
        display, for the brand. Nothing else of the entry leaves before it completes."""
        return self._buf.prefix(count)

    def expire(self) -> Result:
        """The armed timeout passed: submit what is there if it is enough, else time out."""
        if self.done:
            return Result(outcome=Outcome.IGNORED, count=self.count)
        if len(self._buf) >= self.spec.min_digits:
            return self._complete()
        self.done = True
        return Result(outcome=Outcome.TIMEOUT, count=self.count)

    def _complete(self) -> Result:
        self.done = True
        held, self._buf = self._buf, SensitiveDigits(self.spec.max_digits + 1)
        return Result(outcome=Outcome.COMPLETE, count=len(held), digits=held)

    def wipe(self) -> None:
        self._buf.clear()

    def reset(self) -> None:
        self.wipe()
        self.done = False
        self._last_key = ""
        self._last_at = float("-inf")
