"""Every rule for what a screen, a log line or an event stream may see of a secret (pure).

- a keyed field at the end (:func:`mask_result`): length, valid flag and reason id; for a valid
  card the brand and the last four digits, for a valid IBAN its country and the last two, for a
  valid US routing number the last four, for a valid account number the last four when it has
  at least eight digits (never more than half of it); for a postal code only its length;
- a vaulted value on a screen (:func:`mask_stored`);
- a value or phone number in a log line (:func:`mask_digits`, :func:`mask_phone`,
  :func:`mask_recipient`); :mod:`callsec_ari.logs` blanks what slips through with
  :data:`REDACTED`.

Keyed digits are read through :class:`~callsec_ari.core.digits.SensitiveDigits` (its ``tail``),
never copied whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from callsec_ari.core.digits import SensitiveDigits

MASK_CHAR = "•"
REDACTED = "<redacted>"
#: Digits of a valid card number / IBAN a masked result shows.
CARD_TAIL_DIGITS = 4
IBAN_TAIL_DIGITS = 2
#: An account number shows its last 4 digits only from this length on.
ACCOUNT_TAIL_FROM = 8


class Verdict(Protocol):
    """A field check's outcome (``capture.fields.Validation``)."""

    @property
    def ok(self) -> bool: ...
    @property
    def reason_id(self) -> str | None: ...
    @property
    def brand(self) -> str | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class MaskedResult:
    kind: str
    length: int
    valid: bool
    reason_id: str | None = None
    brand: str | None = None
    #: The last 4 digits of a valid card, the last 2 of a valid IBAN, else "".
    last_digits: str = ""
    country: str | None = None

    def __str__(self) -> str:
        parts = [str(self.kind)]
        if self.brand:
            parts.append(self.brand)
        if self.country:
            parts.append(self.country)
        if self.last_digits:
            parts.append(MASK_CHAR * 4 + self.last_digits)
        verdict = "valid" if self.valid else f"invalid: {self.reason_id}"
        return " ".join(parts) + f" ({self.length} digits, {verdict})"

    def to_json(self) -> dict[str, object]:
        return {"field": str(self.kind), "length": self.length, "valid": self.valid,
                "reason_id": self.reason_id, "brand": self.brand,
                "last_digits": self.last_digits, "country": self.country}


def shown_tail(kind: str, length: int) -> int:
    """How many trailing digits of a valid ``kind`` value of ``length`` digits may be shown."""
    if kind in ("card_number", "routing_number") and length > CARD_TAIL_DIGITS:
        return CARD_TAIL_DIGITS
    if kind == "iban" and length > IBAN_TAIL_DIGITS:
        return IBAN_TAIL_DIGITS
    if kind == "account_number" and length >= ACCOUNT_TAIL_FROM:
        return CARD_TAIL_DIGITS
    return 0


def mask_result(kind: str, digits: SensitiveDigits | str, validation: Verdict, *,
                country: str | None = None) -> MaskedResult:
    """The masked outcome of one field; ``country`` is the IBAN country (shown for IBANs)."""
    length = len(digits)
    count = shown_tail(kind, length) if validation.ok else 0
    if isinstance(digits, SensitiveDigits):
        last = digits.tail(count)
    else:
        last = digits[len(digits) - count:]
    return MaskedResult(
        kind=kind, length=length, valid=validation.ok, reason_id=validation.reason_id,
        brand=validation.brand if kind == "card_number" else None, last_digits=last,
        country=country.upper() if kind == "iban" and country else None)


def mask_stored(kind: str, value: str) -> str:
    """What a screen may show of a vaulted value."""
    compact = "".join(ch for ch in value if not ch.isspace())
    if kind == "card_number":
        return "•••• " + compact[-4:]
    if kind == "iban":
        return f"{compact[:2].upper()}•• •••• {compact[-4:]}"
    if kind == "expiry":
        return "••/••"
    if kind == "national_id":
        return mask_digits(compact)
    if kind == "routing_number" or (kind == "account_number" and len(compact) >= 8):
        return "•••• " + compact[-4:]
    return f"<{len(compact)} characters>"


def mask_digits(value: str | None) -> str:
    """``'4111111111111111'`` -> ``'<16 digits>'``. Never shows a digit."""
    if not value:
        return "<0 digits>"
    return f"<{sum(ch.isdigit() for ch in value)} digits>"


def last_digits(number: str | None, count: int = 2) -> str:
    digits = "".join(ch for ch in (number or "") if ch.isdigit())
    return digits[-count:]


def mask_phone(number: str | None) -> str:
    """``'+4915112345678'`` -> ``'+49…78'``: country code and the last two digits, as the
    product's prompts and desk show them ("your phone ending in 78")."""
    if not number:
        return "<none>"
    digits = last_digits(number, 99)
    if len(digits) < 6:
        return "<short number>"
    prefix = "+" + digits[:2] if number.startswith("+") else ""
    return f"{prefix}…{digits[-2:]}"


def mask_recipient(to: str) -> str:
    """A recipient fit for a log line: ``+49…78`` for a number, ``<e-mail @example.org>``."""
    if "@" in to:
        return f"<e-mail @{to.rsplit('@', 1)[1]}>"
    return mask_phone(to)
