"""vCard parsing of strings: 3.0 and 4.0, folding, umlauts, extensions, malformed cards."""

from __future__ import annotations

from datetime import UTC, datetime

import vobject

from callsec_ari.store.customers import Customer, Name, Phone
from callsec_ari.store.vcard import CardFailure, ParsedCard, parse_vcards, split_cards, to_vcard

V3 = (
    "BEGIN:VCARD\r\n"
    "VERSION:3.0\r\n"
    "UID:abc-1\r\n"
    "N:Müller;Jürgen;;;\r\n"
    "FN:Jürgen Müller\r\n"
    "TEL;TYPE=HOME,VOICE:+49 30 12345678\r\n"
    "TEL;TYPE=CELL:+49 151 2345\r\n"
    " 6789\r\n"
    "EMAIL;TYPE=INTERNET:juergen@example.org\r\n"
    "X-CALLSEC-CUSTOMER-NUMBER:44556677\r\n"
    "END:VCARD\r\n"
)
V4 = (
    "BEGIN:VCARD\n"
    "VERSION:4.0\n"
    "UID:urn:uuid:4fbe8971-0bc3-424c-9c26-36c3e1eff6b1\n"
    "FN:Åsa Öberg-Straße\n"
    "N:Öberg-Straße;Åsa;;;\n"
    'TEL;VALUE=uri;TYPE="voice,cell";PREF=1:tel:+49-160-1234567\n'
    "TEL;VALUE=uri;TYPE=cell:tel:+49-171-7654321\n"
    "EMAIL;PREF=1:asa@example.de\n"
    "EMAIL:other@example.de\n"
    "LANG;PREF=1:de-DE\n"
    "X-CALLSEC-METHOD:email\n"
    "END:VCARD\n"
)
BROKEN = "BEGIN:VCARD\nVERSION:3.0\nUID:broken-7\nFN;=x:\n this is : not ; a card\nEND:VCARD\n"


def parsed(text: str) -> list[ParsedCard | CardFailure]:
    return list(parse_vcards(text))


def test_vcard3_maps_name_phones_email_and_customer_number() -> None:
    [card] = parsed(V3)
    assert isinstance(card, ParsedCard)
    d = card.data
    assert d.name == Name("Jürgen Müller", "Jürgen", "Müller")
    assert [(p.number, p.kind) for p in d.phones] == [
        ("+49 30 12345678", "landline"), ("+49 151 23456789", "mobile")]  # folded line joined
    assert d.email == "juergen@example.org"
    assert d.customer_number == "44556677"
    assert d.uid == "abc-1" and d.language == "en" and d.preferred_method == "sms"


def test_vcard4_tel_uris_pref_lang_and_method_extension() -> None:
    [card] = parsed(V4)
    assert isinstance(card, ParsedCard)
    d = card.data
    assert d.name.full == "Åsa Öberg-Straße"
    assert d.phones[0] == Phone("+49-160-1234567", "mobile", True)
    assert d.phones[1] == Phone("+49-171-7654321", "mobile", False)
    assert d.email == "asa@example.de"
    assert d.language == "de" and d.preferred_method == "email"


def test_malformed_card_is_reported_with_position_and_uid_and_others_parse() -> None:
    results = parsed(V3 + BROKEN + V4)
    assert [type(r).__name__ for r in results] == ["ParsedCard", "CardFailure", "ParsedCard"]
    failure = results[1]
    assert isinstance(failure, CardFailure)
    assert failure.position == 2 and failure.uid == "broken-7"
    assert failure.line == V3.count("\n") + 1
    assert "not ; a card" not in failure.reason


def test_unterminated_card_is_a_failure_and_the_next_card_still_parses() -> None:
    results = parsed("BEGIN:VCARD\nVERSION:3.0\nFN:Lost\n" + V4)
    assert isinstance(results[0], CardFailure) and "END:VCARD" in results[0].reason
    assert isinstance(results[1], ParsedCard)


def test_split_ignores_text_between_cards() -> None:
    chunks = list(split_cards("junk\n" + V3 + "\n\nmore junk\n" + V4))
    assert [c[0] for c in chunks] == [1, 2] and all(c[2] for c in chunks)


def test_export_is_vcard4_and_parses_back_to_the_same_customer() -> None:
    now = datetime.now(UTC)
    customer = Customer(
        ref="C-TEST", name=Name("Jürgen Müller", "Jürgen", "Müller"),
        phones=(Phone("+4915123456789", "mobile", True), Phone("+493012345678", "landline")),
        email="j@example.org", language="de", preferred_method="sms",
        customer_number="12345678", uid="abc-1", totp_secret="JBSWY3DPEHPK3PXP",
        created_at=now, updated_at=now)
    text = to_vcard(customer)
    assert vobject.readOne(text).version.value == "4.0"
    assert "JBSWY3DPEHPK3PXP" not in text
    [card] = parsed(text)
    assert isinstance(card, ParsedCard)
    d = card.data
    assert d.name == customer.name and d.email == customer.email and d.uid == "abc-1"
    assert d.phones == (Phone("+4915123456789", "mobile", True),
                        Phone("+493012345678", "landline", False))
    assert (d.language, d.preferred_method, d.customer_number) == ("de", "sms", "12345678")


def test_customer_repr_masks_personal_fields() -> None:
    now = datetime.now(UTC)
    c = Customer(ref="C-X", name=Name("Jürgen Müller"), phones=(Phone("+4915123456789"),),
                 email="j@example.org", customer_number="12345678", created_at=now,
                 updated_at=now)
    text = repr(c) + repr(c.data()) + repr(c.phones) + repr(c.name)
    for secret in ("Jürgen", "15123456789", "j@example.org", "12345678"):
        assert secret not in text
