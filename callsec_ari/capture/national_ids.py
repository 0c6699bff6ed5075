"""National / insurance id kinds (``[capture] national_id_kind``), pure: each check returns a
reason id (``length``, ``format``, ``checksum``) or ``None``; the unit tests compare them with
python-stdnum on generated inputs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass


def _all_digits(value: str) -> bool:
    return value.isascii() and (value == "" or value.isdigit())


@dataclass(frozen=True, slots=True)
class NationalIdValidator:
    """A fixed-length national id: ``check(digits)`` returns a reason id or None."""

    length: int
    check: Callable[[str], str | None]

    def __call__(self, digits: str) -> str | None:
        if len(digits) != self.length:
            return "length"
        if not _all_digits(digits):
            return "format"
        return self.check(digits)


def iso7064_mod11_10(digits: str) -> int:
    """ISO/IEC 7064 MOD 11,10 check digit for ``digits``."""
    product = 10
    for char in digits:
        total = (int(char) + product) % 10 or 10
        product = total * 2 % 11
    return (11 - product) % 10


def _de_steuer_id(digits: str) -> str | None:
    """German tax id (IdNr): first digit not 0; in the first ten digits exactly one digit occurs
    twice or three times, every other at most once, and a triple never stands three in a row."""
    head = digits[:10]
    if head[0] == "0":
        return "format"
    repeated = [count for count in Counter(head).values() if count > 1]
    if len(repeated) != 1 or repeated[0] not in (2, 3):
        return "format"
    if any(head[i] == head[i + 1] == head[i + 2] for i in range(len(head) - 2)):
        return "format"
    if iso7064_mod11_10(head) != int(digits[10]):
        return "checksum"
    return None


def _nl_bsn(digits: str) -> str | None:
    """Dutch BSN: the "11-proof" with weights 9..2 and -1."""
    if int(digits) == 0:
        return "format"
    total = sum(int(d) * w for d, w in zip(digits, (9, 8, 7, 6, 5, 4, 3, 2, -1), strict=True))
    return None if total % 11 == 0 else "checksum"


#: Numbers the SSA has declared void (advertising and misuse cases).
_SSN_VOID = frozenset({"078051120", "219099999", "457555462"})


def _us_ssn(digits: str) -> str | None:
    """US SSN: area not 000, 666 or 900-999; group not 00; serial not 0000."""
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area in {"000", "666"} or area[0] == "9" or group == "00" or serial == "0000":
        return "format"
    return "format" if digits in _SSN_VOID else None


#: Pluggable national id kinds (``[capture] national_id_kind``).
NATIONAL_ID_VALIDATORS: dict[str, NationalIdValidator] = {
    "de_steuer_id": NationalIdValidator(11, _de_steuer_id),
    "nl_bsn": NationalIdValidator(9, _nl_bsn),
    "us_ssn": NationalIdValidator(9, _us_ssn),
}
