"""vCard import into the encrypted store: idempotent by UID, malformed cards skipped, no
plaintext on disk; the 10,000-card file (slow)."""

from __future__ import annotations

import logging
import random
import time

import pytest
from store_helpers import encodings, raw_database_bytes

from callsec_ari.store.context import Store
from callsec_ari.store.vcard import import_vcards, to_vcard

log = logging.getLogger(__name__)


def card(i: int, *, uid: bool = True, version: str = "3.0") -> str:
    mobile = f"+49151{10_000_000 + i:08d}"
    tel = (f"TEL;VALUE=uri;TYPE=cell:tel:{mobile}" if version == "4.0"
           else f"TEL;TYPE=CELL:{mobile}")
    lines = ["BEGIN:VCARD", f"VERSION:{version}",
             f"N:Müßig-{i};Jörg;;;", f"FN:Jörg Müßig-{i}", tel,
             f"EMAIL:joerg.{i}@example.org", "LANG:de", f"X-CALLSEC-CUSTOMER-NUMBER:{70_000_000 + i}"]
    if uid:
        lines.insert(2, f"UID:uid-{i}")
    return "\r\n".join([*lines, "END:VCARD"]) + "\r\n"


BROKEN = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:bad-{i}\r\nFN;=:\r\n x : y\r\nEND:VCARD\r\n"
BAD_PHONE = ("BEGIN:VCARD\r\nVERSION:4.0\r\nUID:badphone-{i}\r\nFN:No Phone\r\n"
             "TEL;TYPE=cell:+49 000 1\r\nEND:VCARD\r\n")


def test_import_creates_customers_and_reimport_updates_by_uid(store: Store) -> None:
    text = card(1) + card(2, version="4.0")
    first = import_vcards(store.customers, text)
    assert (first.created, first.updated, first.failed) == (2, 0, [])
    c = store.customers.find_by_phone("+4915110000001")
    assert c is not None and c.name.full == "Jörg Müßig-1" and c.language == "de"
    assert c.customer_number == "70000001" and c.uid == "uid-1"
    again = import_vcards(store.customers, text.replace("joerg.1@", "j1@"))
    assert (again.created, again.updated) == (0, 2)
    assert store.customers.get(c.ref).email == "j1@example.org"
    assert len(store.customers.list_refs()) == 2
    assert store.audit.tail()[-1].details == {"created": 0, "updated": 2, "failed": 0}


def test_exported_card_reimports_onto_the_same_customer(store: Store) -> None:
    report = import_vcards(store.customers, card(5, uid=False))
    ref = report.refs[0]
    exported = to_vcard(store.customers.get(ref))
    again = import_vcards(store.customers, exported)
    assert (again.created, again.updated, again.refs) == (0, 1, [ref])


def test_malformed_cards_are_reported_and_the_rest_import(store: Store) -> None:
    text = card(1) + BROKEN.format(i=2) + card(3) + BAD_PHONE.format(i=4) + card(5)
    report = import_vcards(store.customers, text)
    assert report.created == 3
    assert [(f.position, f.uid) for f in report.failed] == [(2, "bad-2"), (4, "badphone-4")]
    assert "000" not in str(report.failed[1])


def test_imported_names_and_numbers_are_not_on_disk_in_plaintext(store: Store) -> None:
    import_vcards(store.customers, card(42) + card(43, version="4.0"))
    raw = raw_database_bytes(store.db)
    for value in ("Müßig-42", "Jörg", "15110000042", "joerg.42@example.org", "70000043",
                  "uid-42"):
        for form in encodings(value):
            assert form not in raw, value


@pytest.mark.slow
def test_ten_thousand_card_file_imports_and_reports_the_malformed(store: Store) -> None:
    rng = random.Random(7)
    bad = set(rng.sample(range(10_000), 25))
    parts = [BROKEN.format(i=i) if i in bad else card(i, version=rng.choice(("3.0", "4.0")))
             for i in range(10_000)]
    started = time.monotonic()
    report = import_vcards(store.customers, "".join(parts))
    elapsed = time.monotonic() - started
    log.warning("10,000-card import on %s: %.1f s (%.0f cards/s)", store.db.dialect, elapsed,
                10_000 / elapsed)
    print(f"\n10,000-card import on {store.db.dialect}: {elapsed:.1f} s")
    assert report.created == 10_000 - len(bad)
    assert sorted(f.position - 1 for f in report.failed) == sorted(bad)
    sample = rng.choice([i for i in range(10_000) if i not in bad])
    found = store.customers.find_by_phone(f"+49151{10_000_000 + sample:08d}")
    assert found is not None and found.name.full == f"Jörg Müßig-{sample}"
