"""vCard 3.0 / 4.0 import and 4.0 export (``vobject``).

Mapping: ``FN``/``N`` -> name; ``TEL;TYPE=cell`` (or ``mobile``) -> mobile, other ``TEL`` ->
landline, a mobile with ``PREF`` receives codes (else the first mobile); ``EMAIL`` (``PREF``
first); ``LANG`` (``de``, ``de-DE`` ...; anything but en/de -> default language); ``UID`` (stored
encrypted and as a blind index: re-importing a card updates its customer); extensions
``X-CALLSEC-CUSTOMER-NUMBER`` and ``X-CALLSEC-METHOD`` (sms|email|totp).

A file is split into cards before parsing, so one malformed card is reported (position, line,
UID) and skipped while the others import. A phone number that is not a valid number (e.g. a
UK drama-range mobile) is left out and reported as a warning when anything usable is left (an
e-mail address or another valid number); a card with nothing usable is rejected. A card
without a UID updates the customer whose phone number or e-mail address (blind indexes) it
carries, so re-importing it never duplicates. Failure reasons never contain a card's values.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import vobject

from callsec_ari.core.errors import InvalidInput
from callsec_ari.store.blind import normalise_phone
from callsec_ari.store.customers import Customer, CustomerData, CustomerStore, Name, Phone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CardFailure:
    position: int
    line: int
    uid: str | None
    reason: str

    def __str__(self) -> str:
        uid = f" (UID {self.uid})" if self.uid else ""
        return f"card {self.position} at line {self.line}{uid}: {self.reason}"


@dataclass(frozen=True)
class ParsedCard:
    position: int
    line: int
    data: CustomerData


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    failed: list[CardFailure] = field(default_factory=list)
    #: Cards imported without some of their values (an invalid phone number left out).
    warnings: list[CardFailure] = field(default_factory=list)
    seconds: float = 0.0
    refs: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.created + self.updated + len(self.failed)

    def summary(self) -> str:
        warned = f", {len(self.warnings)} with warnings" if self.warnings else ""
        return (f"{self.total} cards: {self.created} created, {self.updated} updated, "
                f"{len(self.failed)} failed{warned} ({self.seconds:.1f} s)")


def split_cards(text: str) -> Iterator[tuple[int, int, str | None]]:
    """``(position, first line, card text)``; the text is ``None`` for an unterminated card."""
    position, start, buf = 0, 0, list[str]()
    inside = False
    for number, line in enumerate(text.splitlines(), 1):
        word = line.strip().upper()
        if word == "BEGIN:VCARD":
            if inside:
                yield position, start, None
            position, start, buf, inside = position + 1, number, [line], True
        elif inside:
            buf.append(line)
            if word == "END:VCARD":
                inside = False
                yield position, start, "\r\n".join(buf) + "\r\n"
    if inside:
        yield position, start, None


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value if v).strip()
    return str(value or "").strip()


def _types(line: Any) -> set[str]:
    out: set[str] = set()
    for raw in line.params.get("TYPE", []):
        out.update(t.strip().strip('"').lower() for t in str(raw).split(",") if t.strip())
    if line.params.get("PREF"):
        out.add("pref")
    return out


def _values(card: Any, name: str) -> list[Any]:
    return list(card.contents.get(name, []))


def _name(card: Any) -> Name:
    fn = _text(_values(card, "fn")[0].value) if _values(card, "fn") else ""
    given = family = ""
    if _values(card, "n"):
        n = _values(card, "n")[0].value
        given, family = _text(getattr(n, "given", "")), _text(getattr(n, "family", ""))
    return Name(fn, given, family)


def _phones(card: Any) -> tuple[Phone, ...]:
    phones: list[Phone] = []
    preferred: int | None = None
    for line in _values(card, "tel"):
        number = _text(line.value)
        if number.lower().startswith("tel:"):
            number = number[4:].split(";", 1)[0]
        types = _types(line)
        kind = "mobile" if types & {"cell", "mobile", "iphone"} else "landline"
        if kind == "mobile" and "pref" in types and preferred is None:
            preferred = len(phones)
        phones.append(Phone(number, kind, False))
    if preferred is not None:
        phones[preferred] = Phone(phones[preferred].number, "mobile", True)
    return tuple(phones)


def _email(card: Any) -> str | None:
    lines = sorted(_values(card, "email"), key=lambda line: "pref" not in _types(line))
    return _text(lines[0].value) or None if lines else None


def _language(card: Any, default: str) -> str:
    for name in ("lang", "x-lang"):
        for line in _values(card, name):
            code = _text(line.value).lower()[:2]
            if code in ("en", "de"):
                return code
    return default


def _extension(card: Any, name: str) -> str | None:
    lines = _values(card, name)
    return _text(lines[0].value) or None if lines else None


def card_to_data(card: Any, default_language: str = "en") -> CustomerData:
    phones = _phones(card)
    email = _email(card)
    method = (_extension(card, "x-callsec-method") or "").lower()
    if not method:
        method = "sms" if any(p.kind == "mobile" for p in phones) else \
            "email" if email else "sms"
    uid = _extension(card, "uid")
    return CustomerData(name=_name(card), phones=phones, email=email,
                        language=_language(card, default_language), preferred_method=method,
                        customer_number=_extension(card, "x-callsec-customer-number"), uid=uid)


def _uid_hint(chunk: str) -> str | None:
    for line in chunk.splitlines():
        if line.upper().startswith("UID:") or line.upper().startswith("UID;"):
            return line.split(":", 1)[1].strip()[:80] or None
    return None


def parse_vcards(text: str, default_language: str = "en"
                 ) -> Iterator[ParsedCard | CardFailure]:
    """Parse every card of ``text``; a broken card yields a :class:`CardFailure`."""
    for position, line, chunk in split_cards(text):
        if chunk is None:
            yield CardFailure(position, line, None, "no END:VCARD")
            continue
        uid = _uid_hint(chunk)
        try:
            card = vobject.readOne(chunk, ignoreUnreadable=False)
            yield ParsedCard(position, line, card_to_data(card, default_language))
        except Exception as exc:  # vobject raises many kinds on malformed input
            log.debug("vCard %s unparsable: %s", position, type(exc).__name__)
            yield CardFailure(position, line, uid, f"malformed vCard ({type(exc).__name__})")


def drop_invalid_phones(parsed: ParsedCard, region: str
                        ) -> tuple[ParsedCard | CardFailure, list[CardFailure]]:
    """The card without its invalid phone numbers (one warning each) when an e-mail address
    or a valid number is left; else a failure. Reasons name the TEL's position only."""
    kept: list[Phone] = []
    warnings: list[CardFailure] = []
    data = parsed.data
    for index, phone in enumerate(data.phones, 1):
        try:
            normalise_phone(phone.number, region)
        except InvalidInput:
            warnings.append(CardFailure(parsed.position, parsed.line, data.uid,
                                        f"TEL {index} is not a valid phone number: left out"))
            continue
        kept.append(phone)
    if not warnings:
        return parsed, []
    if not kept and not data.email:
        return CardFailure(parsed.position, parsed.line, data.uid,
                           "no valid phone number and no e-mail address"), []
    method = data.preferred_method
    if method == "sms" and not any(p.kind == "mobile" for p in kept) and data.email:
        method = "email"
    return ParsedCard(parsed.position, parsed.line, dataclasses.replace(
        data, phones=tuple(kept), preferred_method=method)), warnings


def import_vcards(store: CustomerStore, text: str, *, default_language: str = "en",
                  actor: str = "system", batch: int = 200) -> ImportReport:
    """Create or update (same UID) a customer per card, ``batch`` cards per transaction;
    failures are collected, not raised."""
    report = ImportReport()
    started = time.monotonic()
    pending: list[ParsedCard] = []

    def flush() -> None:
        results = store.save_many([p.data for p in pending], actor=actor)
        for parsed, result in zip(pending, results, strict=True):
            if result.error is not None or result.ref is None:
                reason = result.error.message if result.error else "not saved"
                report.failed.append(CardFailure(parsed.position, parsed.line,
                                                 parsed.data.uid, reason))
                continue
            report.refs.append(result.ref)
            if result.created:
                report.created += 1
            else:
                report.updated += 1
        pending.clear()

    for parsed in parse_vcards(text, default_language):
        item = parsed
        if isinstance(parsed, ParsedCard):
            item, warnings = drop_invalid_phones(parsed, store.blind.default_region)
            report.warnings.extend(warnings)
        if isinstance(item, CardFailure):
            report.failed.append(item)
            continue
        pending.append(item)
        if len(pending) >= batch:
            flush()
    flush()
    report.failed.sort(key=lambda f: f.position)
    failed = {f.position for f in report.failed}
    report.warnings = [w for w in report.warnings if w.position not in failed]
    report.seconds = time.monotonic() - started
    if store.audit is not None:
        details = {"created": report.created, "updated": report.updated,
                   "failed": len(report.failed)}
        if report.warnings:
            details["warnings"] = len(report.warnings)
        store.audit.append(actor, "customers.import", "", details)
    return report


def to_vcard(customer: Customer) -> str:
    """vCard 4.0 of ``customer`` (no TOTP secret: it is a credential, not contact data)."""
    card = vobject.vCard()
    card.add("version").value = "4.0"
    card.add("uid").value = customer.uid or f"urn:callsec:{customer.ref}"
    card.add("fn").value = customer.name.full
    card.add("n").value = vobject.vcard.Name(family=customer.name.family,
                                             given=customer.name.given)
    for phone in customer.phones:
        tel = card.add("tel")
        tel.value = f"tel:{phone.number}"
        tel.params["VALUE"] = ["uri"]
        tel.params["TYPE"] = ["cell"] if phone.kind == "mobile" else ["voice"]
        if phone.receives_codes:
            tel.params["PREF"] = ["1"]
    if customer.email:
        card.add("email").value = customer.email
    card.add("lang").value = customer.language
    if customer.customer_number:
        card.add("x-callsec-customer-number").value = customer.customer_number
    card.add("x-callsec-method").value = customer.preferred_method
    return str(card.serialize())
