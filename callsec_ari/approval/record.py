"""Approval terms and the signed approval record (pure).

Terms: ``amount`` a decimal string (``49.90``; at most 9 integer digits and 2 decimals, more
than zero), ``currency`` an ISO 4217 code among ``[approval] currencies``, ``payee`` printable
text of 1..70 characters (SEPA's creditor-name length) after NFC normalisation and whitespace
folding; control characters, ``<>{}`` and the like are refused, not stripped.

The code is bound to :func:`terms_digest` (SHA-256 over amount, currency, payee and call id):
a changed amount or payee is a new approval with a new code.

The record is canonical JSON (sorted keys, no spaces) signed with HMAC-SHA256 under a key
derived from the audit key (:func:`record_key`): it proves the record was written by a holder
of the deployment's audit key and has not been changed since. :func:`verify_record` checks it.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from callsec_ari.approval.errors import ApprovalTermsInvalid
from callsec_ari.core.signing import derive_key, mac_hex, mac_matches

RECORD_KEY_LABEL = b"callsec-approval-record-v1"
PAYEE_MAX = 70
_AMOUNT = re.compile(r"[0-9]{1,9}(\.[0-9]{1,2})?")
_CURRENCY = re.compile(r"[A-Z]{3}")
#: Letters, marks, numbers, spaces and the punctuation company names use.
_PAYEE_PUNCT = frozenset(" .,&'-/()+:")


@dataclass(frozen=True, kw_only=True)
class Terms:
    amount: str
    currency: str
    payee: str


def _bad(field: str, message: str) -> ApprovalTermsInvalid:
    return ApprovalTermsInvalid(f"{field}: {message}", details={"field": field})


def parse_amount(raw: object) -> str:
    if not isinstance(raw, str) or not _AMOUNT.fullmatch(raw):
        raise _bad("amount", "a decimal string such as 49.90")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise _bad("amount", "a decimal string such as 49.90") from None
    if value <= 0:
        raise _bad("amount", "must be more than zero")
    return f"{value:.2f}"


def parse_currency(raw: object, allowed: tuple[str, ...]) -> str:
    if not isinstance(raw, str) or not _CURRENCY.fullmatch(raw) or raw not in allowed:
        raise ApprovalTermsInvalid("currency: not an allowed ISO 4217 code",
                                   details={"field": "currency", "allowed": list(allowed)})
    return raw


def parse_payee(raw: object) -> str:
    if not isinstance(raw, str):
        raise _bad("payee", "text")
    if any(unicodedata.category(char)[0] == "C" for char in raw):
        raise _bad("payee", "no control or format characters")
    text = " ".join(unicodedata.normalize("NFC", raw).split())
    if not 1 <= len(text) <= PAYEE_MAX:
        raise _bad("payee", f"1 to {PAYEE_MAX} characters")
    for char in text:
        if char in _PAYEE_PUNCT:
            continue
        if unicodedata.category(char)[0] not in "LMN":
            raise _bad("payee", "letters, digits, spaces and . , & ' - / ( ) + : only")
    return text


def parse_terms(body: Mapping[str, Any], currencies: tuple[str, ...]) -> Terms:
    return Terms(amount=parse_amount(body.get("amount")),
                 currency=parse_currency(body.get("currency"), currencies),
                 payee=parse_payee(body.get("payee")))


def terms_digest(terms: Terms, call_id: str) -> str:
    """What the code is bound to: SHA-256 (hex) over the length-prefixed fields."""
    h = hashlib.sha256(b"callsec-approval-terms-v1")
    for part in (terms.amount, terms.currency, terms.payee, call_id):
        data = part.encode("utf-8")
        h.update(len(data).to_bytes(4, "big") + data)
    return h.hexdigest()


def record_key(audit_key: bytes) -> bytes:
    return derive_key(audit_key, RECORD_KEY_LABEL)


def canonical(record: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(record), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def sign_record(record: Mapping[str, Any], key: bytes) -> str:
    """HMAC-SHA256 (hex) of the canonical record under ``key`` (:func:`record_key`)."""
    return mac_hex(key, canonical(record))


def verify_record(record: Mapping[str, Any], signature: str, key: bytes) -> bool:
    return mac_matches(key, canonical(record), signature)
