"""What each capturable field is and how its keyed digits are checked (pure; no clock, no I/O).

A flow asks :func:`spec_for` for the :class:`FieldSpec` of a field in the call's
:class:`ValidationContext` (lengths depend on it: CVV on the card's brand, IBAN on the country,
national ids on their kind), collects digits until ``#`` or ``max_digits``, then calls
:meth:`FieldSpec.validate`. A :class:`Validation` carries a ``reason_id`` (a stable token such as
``luhn`` that prompts and the desk map to text) and never any of the digits.

The check digits are python-stdnum's (Luhn, IBAN here; national ids in
:mod:`~callsec_ari.capture.national_ids`, US bank numbers and postal formats in
:mod:`~callsec_ari.capture.formats`), with callsec's stricter rules on top (IBAN check digits 00,
01 and 99 are refused: ISO 13616 allows 02-98).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from stdnum import iban, luhn

from callsec_ari.capture.formats import (
    POSTAL_FORMATS,
    ROUTING_DIGITS,
    check_account_number,
    check_routing_number,
)
from callsec_ari.capture.national_ids import NATIONAL_ID_VALIDATORS
from callsec_ari.core.digits import SensitiveDigits
from callsec_ari.core.errors import InvalidInput


class FieldKind(StrEnum):
    """The capturable fields (contract names)."""

    CARD_NUMBER = "card_number"
    EXPIRY = "expiry"
    CVV = "cvv"
    POSTAL_CODE = "postal_code"
    IBAN = "iban"
    NATIONAL_ID = "national_id"
    ROUTING_NUMBER = "routing_number"
    ACCOUNT_NUMBER = "account_number"


class CardBrand(StrEnum):
    """Card brands, spelled as in ``[capture] card_brands``."""

    VISA = "visa"
    MASTERCARD = "mastercard"
    AMEX = "amex"
    DISCOVER = "discover"
    DINERS = "diners"
    JCB = "jcb"
    MAESTRO = "maestro"
    UNIONPAY = "unionpay"


class Reason(StrEnum):
    """Why a value was refused (``Validation.reason_id``)."""

    FORMAT = "format"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    LUHN = "luhn"
    UNKNOWN_BRAND = "unknown_brand"
    BRAND_NOT_ACCEPTED = "brand_not_accepted"
    LENGTH_FOR_BRAND = "length_for_brand"
    EXPIRED = "expired"
    TOO_FAR = "too_far"
    LENGTH = "length"
    CHECKSUM = "checksum"
    COUNTRY_UNSUPPORTED = "country_unsupported"
    KIND_UNSUPPORTED = "kind_unsupported"


@dataclass(frozen=True, slots=True, kw_only=True)
class Validation:
    ok: bool
    reason_id: str | None = None
    brand: str | None = None

    @classmethod
    def passed(cls, brand: str | None = None) -> Validation:
        return cls(ok=True, reason_id=None, brand=brand)

    @classmethod
    def failed(cls, reason: Reason, brand: str | None = None) -> Validation:
        return cls(ok=False, reason_id=reason.value, brand=brand)


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationContext:
    """Everything a check may depend on; ``year``/``month`` is today's date, passed in."""

    year: int
    month: int
    allowed_brands: frozenset[str] = frozenset(brand.value for brand in CardBrand)
    #: Brand of the card captured earlier in the same capture (sets the CVV length).
    card_brand: str | None = None
    iban_country: str = "DE"
    national_id_kind: str = "de_steuer_id"
    #: ``[capture] postal_code_format`` (a key of ``formats.POSTAL_FORMATS``).
    postal_code_format: str = "de"
    account_min_digits: int = 4
    account_max_digits: int = 17

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12:
            raise ValueError("month must be 1..12")

    def with_card_brand(self, brand: str | None) -> ValidationContext:
        return replace(self, card_brand=brand)


FieldCheck = Callable[[str, ValidationContext], Validation]


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldSpec:
    """One field as resolved for a context. Entry ends on ``#`` or at ``max_digits``; when
    ``needs_terminator`` is false (fixed length) it completes by itself at ``max_digits``."""

    kind: FieldKind
    min_digits: int
    max_digits: int
    needs_terminator: bool
    prompt: str
    check: FieldCheck = field(repr=False, compare=False)

    def validate(self, digits: SensitiveDigits | str, context: ValidationContext) -> Validation:
        """Checks a holder's digits. python-stdnum works on ``str``: the checks see a copy
        that lives for this call only (never kept, logged or returned)."""
        text = digits.reveal() if isinstance(digits, SensitiveDigits) else digits
        if not _all_digits(text):
            return Validation.failed(Reason.FORMAT)
        return self.check(text, context)


def _all_digits(value: str) -> bool:
    return value.isascii() and (value == "" or value.isdigit())


# --- cards ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _IinRange:
    brand: CardBrand
    low: int
    high: int
    width: int


def _r(brand: CardBrand, low: int, high: int | None = None) -> _IinRange:
    return _IinRange(brand, low, low if high is None else high, len(str(low)))


_IIN_RANGES: tuple[_IinRange, ...] = (
    _r(CardBrand.VISA, 4),
    _r(CardBrand.MASTERCARD, 51, 55), _r(CardBrand.MASTERCARD, 2221, 2720),
    _r(CardBrand.AMEX, 34), _r(CardBrand.AMEX, 37),
    _r(CardBrand.DISCOVER, 6011), _r(CardBrand.DISCOVER, 644, 649), _r(CardBrand.DISCOVER, 65),
    _r(CardBrand.DISCOVER, 622126, 622925),
    _r(CardBrand.DINERS, 300, 305), _r(CardBrand.DINERS, 36), _r(CardBrand.DINERS, 38, 39),
    _r(CardBrand.JCB, 3528, 3589),
    _r(CardBrand.MAESTRO, 5018), _r(CardBrand.MAESTRO, 5020), _r(CardBrand.MAESTRO, 5038),
    _r(CardBrand.MAESTRO, 5893), _r(CardBrand.MAESTRO, 6304), _r(CardBrand.MAESTRO, 6759),
    _r(CardBrand.MAESTRO, 6761, 6763),
    _r(CardBrand.UNIONPAY, 62), _r(CardBrand.UNIONPAY, 81),
)

#: Valid PAN lengths per brand.
BRAND_LENGTHS: dict[CardBrand, frozenset[int]] = {
    CardBrand.VISA: frozenset({13, 16, 19}),
    CardBrand.MASTERCARD: frozenset({16}),
    CardBrand.AMEX: frozenset({15}),
    CardBrand.DISCOVER: frozenset(range(16, 20)),
    CardBrand.DINERS: frozenset(range(14, 20)),
    CardBrand.JCB: frozenset(range(16, 20)),
    CardBrand.MAESTRO: frozenset(range(13, 20)),
    CardBrand.UNIONPAY: frozenset(range(16, 20)),
}
CARD_MIN_DIGITS = 13
CARD_MAX_DIGITS = 19
#: Digits needed before :func:`card_brand` is final (the longest IIN range is 6 digits).
IIN_DIGITS = 6


def card_brand(digits: str) -> CardBrand | None:
    """Brand by IIN; the most specific (longest) matching range wins, so 622126… is Discover
    and 62… otherwise UnionPay. Final only from :data:`IIN_DIGITS` digits on."""
    best: _IinRange | None = None
    for rng in _IIN_RANGES:
        if len(digits) < rng.width or (best is not None and best.width >= rng.width):
            continue
        if rng.low <= int(digits[: rng.width]) <= rng.high:
            best = rng
    return best.brand if best else None


def _check_card(digits: str, context: ValidationContext) -> Validation:
    if len(digits) < CARD_MIN_DIGITS:
        return Validation.failed(Reason.TOO_SHORT)
    if len(digits) > CARD_MAX_DIGITS:
        return Validation.failed(Reason.TOO_LONG)
    brand = card_brand(digits)
    if brand is None:
        return Validation.failed(Reason.UNKNOWN_BRAND)
    name = brand.value
    if len(digits) not in BRAND_LENGTHS[brand]:
        return Validation.failed(Reason.LENGTH_FOR_BRAND, name)
    if not luhn.is_valid(digits):
        return Validation.failed(Reason.LUHN, name)
    if name not in context.allowed_brands:
        return Validation.failed(Reason.BRAND_NOT_ACCEPTED, name)
    return Validation.passed(name)


# --- expiry, CVV, postal code ---------------------------------------------------------------

#: How far ahead an expiry date may lie.
EXPIRY_MAX_YEARS = 20


def _check_expiry(digits: str, context: ValidationContext) -> Validation:
    if len(digits) != 4 or not 1 <= int(digits[:2]) <= 12:
        return Validation.failed(Reason.FORMAT)
    month, two_digit_year = int(digits[:2]), int(digits[2:])
    year = context.year - context.year % 100 + two_digit_year
    if year < context.year and year + 100 - context.year <= EXPIRY_MAX_YEARS:
        year += 100  # "05" seen in 2095 means 2105
    months_ahead = (year * 12 + month) - (context.year * 12 + context.month)
    if months_ahead < 0:  # valid through the end of its month
        return Validation.failed(Reason.EXPIRED)
    if months_ahead > EXPIRY_MAX_YEARS * 12:
        return Validation.failed(Reason.TOO_FAR)
    return Validation.passed()


def cvv_lengths(card_brand_name: str | None) -> tuple[int, int]:
    """(min, max) CVV digits: 4 for Amex, 3 for other known brands, 3..4 when unknown."""
    if card_brand_name is None:
        return (3, 4)
    return (4, 4) if card_brand_name == CardBrand.AMEX else (3, 3)


def _check_cvv(digits: str, context: ValidationContext) -> Validation:
    low, high = cvv_lengths(context.card_brand)
    if not low <= len(digits) <= high:
        return Validation.failed(Reason.LENGTH)
    return Validation.passed()


def _check_postal_code(digits: str, context: ValidationContext) -> Validation:
    postal = POSTAL_FORMATS.get(context.postal_code_format)
    if postal is None:
        return Validation.failed(Reason.KIND_UNSUPPORTED)
    return _verdict(postal.check(digits))


def _check_routing_number(digits: str, context: ValidationContext) -> Validation:
    return _verdict(check_routing_number(digits))


def _check_account_number(digits: str, context: ValidationContext) -> Validation:
    return _verdict(check_account_number(digits, context.account_min_digits,
                                         context.account_max_digits))


def _verdict(reason_id: str | None) -> Validation:
    return Validation.passed() if reason_id is None else Validation.failed(Reason(reason_id))


# --- IBAN -----------------------------------------------------------------------------------

#: Countries whose IBAN is all digits after the country code, and how many digits the caller
#: keys (2 check digits + BBAN), per the SWIFT IBAN registry.
IBAN_DIGITS: dict[str, int] = {
    "AT": 18, "BA": 18, "BE": 14, "CZ": 22, "DE": 20, "DK": 16, "EE": 18, "ES": 22, "FI": 16,
    "FO": 16, "GL": 16, "HR": 19, "HU": 26, "IL": 21, "IS": 24, "LT": 18, "ME": 20, "NO": 13,
    "PL": 26, "PT": 23, "RS": 20, "SE": 22, "SI": 17, "SK": 22, "TN": 22, "XK": 18,
}


#: Check digits ISO 13616 never issues (it allows 02-98), though they pass the mod-97 check.
REFUSED_IBAN_CHECKS = frozenset({"00", "01", "99"})


def iban_check_digits(country: str, bban: str) -> str:
    """The two ISO 13616 check digits for ``bban`` (used to make test and demo data)."""
    return iban.calc_check_digits(country.upper() + "00" + bban)


def _check_iban(digits: str, context: ValidationContext) -> Validation:
    country = context.iban_country.upper()
    expected = IBAN_DIGITS.get(country)
    if expected is None:
        return Validation.failed(Reason.COUNTRY_UNSUPPORTED)
    if len(digits) != expected:
        return Validation.failed(Reason.LENGTH)
    if digits[:2] in REFUSED_IBAN_CHECKS or not iban.is_valid(country + digits,
                                                              check_country=False):
        return Validation.failed(Reason.CHECKSUM)
    return Validation.passed()


def build_iban(country: str, digits: str) -> str:
    """The full IBAN (``DE`` + keyed digits), only for the sink that stores it."""
    country = country.upper()
    if country not in IBAN_DIGITS or not _all_digits(digits) or not digits:
        raise InvalidInput("not an IBAN of a supported country", details={"country": country})
    return country + digits


def _check_national_id(digits: str, context: ValidationContext) -> Validation:
    validator = NATIONAL_ID_VALIDATORS.get(context.national_id_kind)
    if validator is None:
        return Validation.failed(Reason.KIND_UNSUPPORTED)
    return _verdict(validator(digits))


# --- specs ----------------------------------------------------------------------------------

#: Upper bound on digits for a field whose length the context leaves open (unknown country).
_OPEN_MAX_DIGITS = 30


def _spec(kind: FieldKind, low: int, high: int, check: FieldCheck, *,
          terminator: bool | None = None, prompt: str = "") -> FieldSpec:
    return FieldSpec(
        kind=kind, min_digits=low, max_digits=high,
        needs_terminator=low != high if terminator is None else terminator,
        prompt="callsec/" + (prompt or "enter-" + kind.value.replace("_", "-")), check=check,
    )


def spec_for(kind: FieldKind | str, context: ValidationContext) -> FieldSpec:
    """The spec of ``kind`` with lengths resolved for ``context``."""
    kind = FieldKind(kind)
    if kind is FieldKind.CARD_NUMBER:
        return _spec(kind, CARD_MIN_DIGITS, CARD_MAX_DIGITS, _check_card)
    if kind is FieldKind.EXPIRY:
        return _spec(kind, 4, 4, _check_expiry)
    if kind is FieldKind.CVV:
        amex = context.card_brand == CardBrand.AMEX
        return _spec(kind, *cvv_lengths(context.card_brand), _check_cvv,
                     prompt="enter-cvv-amex" if amex else "")
    if kind is FieldKind.POSTAL_CODE:
        postal = POSTAL_FORMATS.get(context.postal_code_format)
        if postal is None:
            return _spec(kind, 1, _OPEN_MAX_DIGITS, _check_postal_code)
        return _spec(kind, min(postal.lengths), max(postal.lengths), _check_postal_code,
                     prompt=postal.prompt)
    if kind is FieldKind.ROUTING_NUMBER:
        return _spec(kind, ROUTING_DIGITS, ROUTING_DIGITS, _check_routing_number)
    if kind is FieldKind.ACCOUNT_NUMBER:
        return _spec(kind, context.account_min_digits, context.account_max_digits,
                     _check_account_number)
    if kind is FieldKind.IBAN:
        size_or_none = IBAN_DIGITS.get(context.iban_country.upper())
        if size_or_none is None:
            return _spec(kind, 1, _OPEN_MAX_DIGITS, _check_iban)
        return _spec(kind, size_or_none, size_or_none, _check_iban)
    validator = NATIONAL_ID_VALIDATORS.get(context.national_id_kind)
    if validator is None:
        return _spec(kind, 1, _OPEN_MAX_DIGITS, _check_national_id)
    return _spec(kind, validator.length, validator.length, _check_national_id)


def validate(kind: FieldKind | str, digits: SensitiveDigits | str,
             context: ValidationContext) -> Validation:
    """Shorthand for ``spec_for(kind, context).validate(digits, context)``."""
    return spec_for(kind, context).validate(digits, context)


def parse_fields(text: str) -> tuple[FieldKind, ...]:
    """``"card_number,expiry,cvv"`` (AGI query, API body) -> kinds, in order, without repeats."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in {kind.value for kind in FieldKind}]
    if unknown or not names:
        raise InvalidInput("unknown or missing capture fields",
                           details={"fields": unknown, "allowed": [k.value for k in FieldKind]})
    return tuple(dict.fromkeys(FieldKind(name) for name in names))
