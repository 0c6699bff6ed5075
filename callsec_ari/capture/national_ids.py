"""National / insurance id kinds (``[capture] national_id_kind``), pure: each check returns a
reason id (``length``, ``format``, ``checksum``) or ``None``. The checks are python-stdnum's
(``de.idnr``, ``nl.bsn``, ``us.ssn``, the SSA's void numbers included) with callsec's stricter
Steuer-ID rule on top."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from stdnum.de import idnr
from stdnum.nl import bsn
from stdnum.us import ssn

from callsec_ari.capture.formats import stdnum_reason


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


def _de_steuer_id(digits: str) -> str | None:
    """German tax id (IdNr) by python-stdnum, plus a rule stdnum leaves out: the digit used
    three times never stands three in a row."""
    head = digits[:10]
    if any(head[i] == head[i + 1] == head[i + 2] for i in range(len(head) - 2)):
        return "format"
    return stdnum_reason(idnr.validate, digits)


#: Pluggable national id kinds (``[capture] national_id_kind``).
NATIONAL_ID_VALIDATORS: dict[str, NationalIdValidator] = {
    "de_steuer_id": NationalIdValidator(11, _de_steuer_id),
    "nl_bsn": NationalIdValidator(9, partial(stdnum_reason, bsn.validate)),
    "us_ssn": NationalIdValidator(9, partial(stdnum_reason, ssn.validate)),
}
