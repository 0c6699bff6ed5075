"""Logging set-up and the one redaction helper.

Every log line carries the call id (``CallLogger`` adds it; lines outside a call show ``-``).
Values typed on a keypad, codes, keys, PANs and phone numbers never reach a log line: code passes
them through :mod:`callsec_ari.core.masking` (``mask_digits`` / ``mask_phone`` keep only a length
or a short tail),
and :class:`RedactingFilter` is a last line of defence that blanks any run of 4+ digits that is
not an id callsec itself generated, compact IBANs, dotted card numbers and labelled secrets
(``PAN:4111...``, ``code=123456``) (model: aiosmtpd's ``sanitized_log``). The same
:func:`redact_text` cleans audit details.
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

from stdnum import luhn

from callsec_ari.core.masking import REDACTED

#: The call whose work the current task (or worker thread) is doing; the dispatcher sets it for
#: each call's worker, so log lines of any module made on a call's behalf carry its id.
current_call: ContextVar[str] = ContextVar("callsec_call_id", default="-")

_DIGIT_RUN = re.compile(r"(?<![\w.:-])\+?\d(?:[\d \-]{2,}\d)(?![\w.:-])")
#: A compact IBAN (``DE89370400440532013000``): country, check digits, 11-30 letters/digits.
_COMPACT_IBAN = re.compile(r"(?<![\w-])[A-Z]{2}\d{2}[A-Z0-9]{11,30}(?![\w-])")
#: A card number in dotted groups (``4111.1111.1111.1111``); IP addresses (groups of at most
#: three digits) and Asterisk ids (``1733567890.42``, two groups) do not fit.
_DOTTED_GROUPS = re.compile(r"(?<![\w.:-])\d{4,6}(?:\.\d{3,6}){2,4}(?![\w.:-])")
#: A secret after its label (``PAN:4111...``, ``code=123456``, ``pin: 1234``).
_LABELLED = re.compile(
    r"(?i)(?<![a-z0-9])(pan|card|ccn?|code|otp|pin|tan|cvv2?|cvc|iban|acct|account|secret)"
    r"(\s*[:=#]\s*[\"']?)(\+?\d[\d .\-]*\d)")
#: Digits an IBAN must carry before it is blanked (base32 refs carry few).
_IBAN_MIN_DIGITS = 8
#: A card number anywhere, glued to a word or punctuation (``Karte:4111...``, ``Nr.4111...``,
#: ``ref-4111...``, ``card_4111_1111_...``): 13-19 digits, single spaces, dashes or
#: underscores between them, blanked when the Luhn check passes (ids rarely do; the other rules
#: need a free-standing run).
_GLUED_CARD = re.compile(r"(?<![\d+])\+?\d(?:[ _\-]?\d){12,18}(?!\d)")


class Figure:
    """A count or a duration for a log line (pass it to ``%s``): printed with thousands
    separators (``1,018``), so :func:`redact_text`, which blanks every run of 4+ digits, keeps
    it. Formatted only if the line is emitted."""

    __slots__ = ("value",)

    def __init__(self, value: float) -> None:
        self.value = value

    def __str__(self) -> str:
        return f"{self.value:,.0f}"


def _digit_count(text: str) -> int:
    return sum(c.isdigit() for c in text)


def _blank_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return REDACTED if digits.isascii() and luhn.is_valid(digits) else match.group()


def _blank_labelled(match: re.Match[str]) -> str:
    if _digit_count(match.group(3)) < 4:
        return match.group()
    return f"{match.group(1)}{match.group(2)}{REDACTED}"


def redact_text(text: str) -> str:
    """Blank every free-standing run of 4+ digits (phone numbers, PANs, codes) in ``text``,
    card numbers (Luhn) wherever they stand, compact IBANs, dotted card numbers, and digits
    after a label such as ``PAN:`` or ``code=``. Counts printed through :class:`Figure`
    (``1,018``) are kept."""
    text = _LABELLED.sub(_blank_labelled, text)
    text = _GLUED_CARD.sub(_blank_card, text)
    text = _COMPACT_IBAN.sub(lambda m: REDACTED if _digit_count(m.group())
                             >= _IBAN_MIN_DIGITS else m.group(), text)
    text = _DOTTED_GROUPS.sub(lambda m: REDACTED if _digit_count(m.group()) >= 12
                              else m.group(), text)
    return _DIGIT_RUN.sub(lambda m: REDACTED if _digit_count(m.group()) >= 4
                          else m.group(), text)


class RedactingFilter(logging.Filter):
    """Last line of defence: rewrites the formatted message so no digit run survives."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        if not hasattr(record, "call_id") or record.call_id == "-":
            record.call_id = current_call.get()
        return True


class CallLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose every line starts with the call id."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any],
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs


def call_logger(logger: logging.Logger, call_id: str) -> CallLogger:
    return CallLogger(logger, {"call_id": call_id})
