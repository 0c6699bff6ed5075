"""What an agent, a log line or an event stream may see of a capture (pure).

- while digits arrive (:func:`mask_progress`): the count, as dots, and for a card the brand once
  :data:`~callsec_ari.capture.fields.IIN_DIGITS` digits are known;
- at the end (:func:`mask_result`): length, valid flag and reason id; for a valid card the brand
  and the last four digits, for a valid IBAN its country and the last two, for a valid US
  routing number the last four, for a valid account number the last four when it has at least
  eight digits (never more than half of it); for a postal code only its length; nothing else.

:class:`SensitiveDigits` holds the keyed digits themselves until the sink takes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from callsec_ari.capture.fields import IIN_DIGITS, FieldKind, Validation, card_brand

MASK_CHAR = "•"
#: Digits of a valid card number / IBAN a masked result shows.
CARD_TAIL_DIGITS = 4
IBAN_TAIL_DIGITS = 2
#: An account number shows its last 4 digits only from this length on.
ACCOUNT_TAIL_FROM = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class MaskedProgress:
    kind: FieldKind
    count: int
    dots: str
    brand: str | None = None

    def __str__(self) -> str:
        brand = f", {self.brand}" if self.brand else ""
        return f"{self.kind.value}: {self.dots or '-'} ({self.count} digits{brand})"

    def to_json(self) -> dict[str, object]:
        return {"field": self.kind.value, "count": self.count, "dots": self.dots,
                "brand": self.brand}


@dataclass(frozen=True, slots=True, kw_only=True)
class MaskedResult:
    kind: FieldKind
    length: int
    valid: bool
    reason_id: str | None = None
    brand: str | None = None
    #: The last 4 digits of a valid card, the last 2 of a valid IBAN, else "".
    last_digits: str = ""
    country: str | None = None

    def __str__(self) -> str:
        parts = [self.kind.value]
        if self.brand:
            parts.append(self.brand)
        if self.country:
            parts.append(self.country)
        if self.last_digits:
            parts.append(MASK_CHAR * 4 + self.last_digits)
        verdict = "valid" if self.valid else f"invalid: {self.reason_id}"
        return " ".join(parts) + f" ({self.length} digits, {verdict})"

    def to_json(self) -> dict[str, object]:
        return {"field": self.kind.value, "length": self.length, "valid": self.valid,
                "reason_id": self.reason_id, "brand": self.brand,
                "last_digits": self.last_digits, "country": self.country}


class SensitiveDigits:
    """Keyed digits in a fixed, pre-allocated ``bytearray`` that is overwritten when done.

    ``repr``/``str`` show only the count; the object refuses to be pickled or copied.
    ``clear()`` restarts entry (the restart key); ``wipe()`` ends the holder's life (after the
    sink took the value; for a CVV right after use). ``reveal()`` / ``take()`` return a ``str``
    that Python cannot wipe: call them only at the moment the sink needs the value.
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

    def reveal(self) -> str:
        self._require_live()
        return str(memoryview(self._buffer)[: self._length], "ascii")

    def take(self) -> str:
        """``reveal()`` then ``wipe()``: hand the value to its one sink (CVV)."""
        value = self.reveal()
        self.wipe()
        return value

    def tail(self, count: int) -> str:
        """The last ``count`` (at most 4) digits, for a masked result."""
        if not 0 <= count <= CARD_TAIL_DIGITS:
            raise ValueError("a tail shows at most 4 digits")
        self._require_live()
        start = max(self._length - count, 0)
        return str(memoryview(self._buffer)[start : self._length], "ascii")

    def brand_hint(self) -> str | None:
        """The card brand once :data:`IIN_DIGITS` digits are known (never from fewer)."""
        if self._wiped or self._length < IIN_DIGITS:
            return None
        brand = card_brand(str(memoryview(self._buffer)[:IIN_DIGITS], "ascii"))
        return brand.value if brand else None

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


def mask_progress(kind: FieldKind | str, digits_so_far: str | SensitiveDigits) -> MaskedProgress:
    kind = FieldKind(kind)
    count = len(digits_so_far)
    brand: str | None = None
    if kind is FieldKind.CARD_NUMBER and count >= IIN_DIGITS:
        if isinstance(digits_so_far, SensitiveDigits):
            brand = digits_so_far.brand_hint()
        else:
            found = card_brand(digits_so_far[:IIN_DIGITS])
            brand = found.value if found else None
    return MaskedProgress(kind=kind, count=count, dots=MASK_CHAR * count, brand=brand)


def mask_result(kind: FieldKind | str, digits: str | SensitiveDigits, validation: Validation, *,
                country: str | None = None) -> MaskedResult:
    """The masked outcome of one field; ``country`` is the IBAN country (shown for IBANs)."""
    kind = FieldKind(kind)
    length = len(digits)
    last = ""
    if validation.ok and kind is FieldKind.CARD_NUMBER and length > CARD_TAIL_DIGITS:
        last = _tail(digits, CARD_TAIL_DIGITS)
    elif validation.ok and kind is FieldKind.IBAN and length > IBAN_TAIL_DIGITS:
        last = _tail(digits, IBAN_TAIL_DIGITS)
    elif validation.ok and kind is FieldKind.ROUTING_NUMBER and length > CARD_TAIL_DIGITS:
        last = _tail(digits, CARD_TAIL_DIGITS)
    elif validation.ok and kind is FieldKind.ACCOUNT_NUMBER and length >= ACCOUNT_TAIL_FROM:
        last = _tail(digits, CARD_TAIL_DIGITS)
    return MaskedResult(
        kind=kind, length=length, valid=validation.ok, reason_id=validation.reason_id,
        brand=validation.brand if kind is FieldKind.CARD_NUMBER else None,
        last_digits=last,
        country=country.upper() if kind is FieldKind.IBAN and country else None,
    )


def _tail(digits: str | SensitiveDigits, count: int) -> str:
    if isinstance(digits, SensitiveDigits):
        return digits.tail(count)
    return digits[-count:]
