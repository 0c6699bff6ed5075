"""Country formats of the newer field kinds (pure): US bank routing and account numbers, postal
codes by country. Each check returns a reason id (``format``, ``length``, ``checksum``) or
``None``; :mod:`callsec_ari.capture.fields` wraps them into :class:`Validation` results.

The ABA routing number's check digit comes from python-stdnum (``stdnum.us.rtn``); the prefix
rule (the Federal Reserve district ranges) is checked here, as stdnum leaves it out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stdnum.exceptions import InvalidChecksum, InvalidLength, ValidationError
from stdnum.us import rtn

ROUTING_DIGITS = 9
#: First two digits of an ABA routing number: 00 (US government), 01-12 (Federal Reserve
#: districts), 21-32 (thrifts), 61-72 (electronic), 80 (traveller's cheques).
ROUTING_PREFIXES = frozenset(
    {0, *range(1, 13), *range(21, 33), *range(61, 73), 80})

#: Bounds ``[capture] account_number_min_digits`` / ``_max_digits`` may take (US account
#: numbers have no national format; banks use 4 to 17 digits).
ACCOUNT_DIGITS_RANGE = (1, 30)


def check_routing_number(digits: str) -> str | None:
    """A US ABA routing transit number: 9 digits, a known prefix, the 3-7-1 check digit."""
    if len(digits) != ROUTING_DIGITS:
        return "length"
    if int(digits[:2]) not in ROUTING_PREFIXES:
        return "format"
    return stdnum_reason(rtn.validate, digits)


def stdnum_reason(check: Callable[[str], object], digits: str) -> str | None:
    """A python-stdnum ``validate`` as a reason id: ``checksum``, ``length``, ``format``."""
    try:
        check(digits)
    except InvalidChecksum:
        return "checksum"
    except InvalidLength:
        return "length"
    except ValidationError:
        return "format"
    return None


def check_account_number(digits: str, low: int, high: int) -> str | None:
    """A US bank account number: ``low``..``high`` digits, not all zeros."""
    if not low <= len(digits) <= high:
        return "length"
    if int(digits) == 0:
        return "format"
    return None


@dataclass(frozen=True, slots=True)
class PostalFormat:
    """A postal code a caller can key: the digit counts it may have, and the prompt asking
    for it (``enter-postal-code`` or a country's own, e.g. ``enter-zip-code``)."""

    lengths: tuple[int, ...]
    prompt: str = "enter-postal-code"
    #: Codes starting with these two digits do not exist (DE: 00).
    void_prefixes: frozenset[str] = frozenset()

    def check(self, digits: str) -> str | None:
        if len(digits) not in self.lengths:
            return "length"
        return "format" if digits[:2] in self.void_prefixes else None


#: ``[capture] postal_code_format`` -> format. Only all-digit formats: a phone keypad cannot
#: type the letters of Dutch, British or Canadian codes.
POSTAL_FORMATS: dict[str, PostalFormat] = {
    "us": PostalFormat((5, 9), prompt="enter-zip-code"),  # ZIP or ZIP+4 (typed as 9 digits)
    "de": PostalFormat((5,), void_prefixes=frozenset({"00"})),  # PLZ
    "at": PostalFormat((4,)),
    "ch": PostalFormat((4,)),
    "fr": PostalFormat((5,)),
    "es": PostalFormat((5,)),
    "it": PostalFormat((5,)),
}
