"""Which prompt tells the caller why an entry was refused (pure): one per error kind, so each
can be replaced per language (``[prompts:<lang>]``). Reason ids as in
:class:`~callsec_ari.capture.fields.Reason`, plus ``confirm_mismatch``."""

from __future__ import annotations

#: Reason id -> prompt name (without ``callsec/``); anything else: ``invalid-entry``.
ERROR_PROMPTS: dict[str, str] = {
    "too_short": "entry-too-short",
    "too_long": "entry-too-long",
    "length": "entry-wrong-length",
    "length_for_brand": "entry-wrong-length",
    "luhn": "entry-check-failed",
    "checksum": "entry-check-failed",
    "expired": "card-expired",
    "brand_not_accepted": "card-not-accepted",
    "confirm_mismatch": "entries-do-not-match",
}
DEFAULT_ERROR_PROMPT = "invalid-entry"


def error_prompt(reason_id: str) -> str:
    """The prompt played before the field is asked again after ``reason_id``."""
    return ERROR_PROMPTS.get(reason_id, DEFAULT_ERROR_PROMPT)
