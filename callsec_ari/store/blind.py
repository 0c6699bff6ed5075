"""Blind indexes: HMAC-SHA256 under a key of its own, so equality look-ups (caller ID,
customer number, vCard UID) work without storing the value or its plain hash.

Phone numbers are normalised to E.164 with ``phonenumbers`` first (``0151 1234 5678`` with
default region DE and ``+49 151 12345678`` give the same index). Each kind of value has its
own domain prefix, so a customer number never matches a phone number.
"""

from __future__ import annotations

import hashlib
import hmac

import phonenumbers

from callsec_ari.core.errors import InvalidInput


def normalise_phone(number: str, default_region: str = "DE") -> str:
    """E.164 form of ``number``; :class:`InvalidInput` (without the number) if it is not a
    valid phone number. Accepts ``tel:`` URIs and ``00`` international prefixes."""
    text = number.strip()
    if text.lower().startswith("tel:"):
        text = text[4:].split(";", 1)[0]
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        parsed = phonenumbers.parse(text, default_region.upper())
    except phonenumbers.NumberParseException:
        raise InvalidInput("not a phone number") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidInput("not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalise_digits(digits: str) -> str:
    """A keypad-typed number: digits only (spaces and dashes dropped)."""
    cleaned = "".join(ch for ch in digits if ch not in " -")
    if not cleaned or not cleaned.isdigit() or not cleaned.isascii():
        raise InvalidInput("a customer number consists of digits only")
    return cleaned


class BlindIndex:
    def __init__(self, key: bytes, default_region: str = "DE") -> None:
        if len(key) < 16:
            raise ValueError("blind-index key too short")
        self._key = key
        self.default_region = default_region

    def __repr__(self) -> str:
        return f"BlindIndex(region={self.default_region!r})"

    def _mac(self, domain: str, value: str) -> bytes:
        return hmac.new(self._key, f"{domain}\0{value}".encode(), hashlib.sha256).digest()

    def phone(self, number: str) -> bytes:
        """Index of a phone number (any common notation); raises :class:`InvalidInput`."""
        return self._mac("phone", normalise_phone(number, self.default_region))

    def phone_e164(self, e164: str) -> bytes:
        """Index of an already normalised E.164 number (bulk paths)."""
        return self._mac("phone", e164)

    def email(self, address: str) -> bytes:
        """Index of an e-mail address (trimmed, case folded)."""
        return self._mac("email", address.strip().casefold())

    def customer_number(self, digits: str) -> bytes:
        return self._mac("customer_number", normalise_digits(digits))

    def uid(self, uid: str) -> bytes:
        """Index of a vCard UID (case and surrounding blanks preserved except trimming)."""
        value = uid.strip()
        if not value:
            raise InvalidInput("empty UID")
        return self._mac("vcard_uid", value)
