"""CustomerStore against SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from sqlalchemy import func, select
from store_helpers import encodings, jurgen, raw_database_bytes

from callsec_ari.core.errors import Conflict, InvalidInput, NotFound
from callsec_ari.store.context import Store
from callsec_ari.store.customers import Name, Phone
from callsec_ari.store.errors import DecryptionFailed
from callsec_ari.store.models import CustomerRow, DataKeyRow, PhoneRow


def test_created_customer_reads_back_with_every_field(store: Store) -> None:
    created = store.customers.create(jurgen(totp_secret="JBSWY3DPEHPK3PXP"))
    got = store.customers.get(created.ref)
    assert got == created
    assert got.ref.startswith("C-") and got.name.full == "Jürgen Müllerstein"
    assert [p.number for p in got.phones] == ["+4915123456789", "+493098765432"]
    assert got.code_phone == Phone("+4915123456789", "mobile", True)
    assert got.email == "juergen.muellerstein@example.org"
    assert (got.language, got.preferred_method, got.customer_number) == ("de", "sms", "31415926")
    assert got.totp_secret == "JBSWY3DPEHPK3PXP"


def test_caller_id_in_any_notation_finds_the_customer(store: Store) -> None:
    ref = store.customers.create(jurgen()).ref
    for caller in ("+4915123456789", "015123456789", "004930 98765432"):
        found = store.customers.find_by_phone(caller)
        assert found is not None and found.ref == ref
    assert store.customers.find_by_phone("+4915199999999") is None
    assert store.customers.find_by_phone("anonymous") is None


def test_caller_id_shared_by_two_customers_is_not_guessed(store: Store) -> None:
    store.customers.create(jurgen(customer_number=None))
    store.customers.create(jurgen(customer_number=None, name=Name("Erika Muster")))
    assert store.customers.find_by_phone("+4915123456789") is None


def test_keypad_customer_number_finds_the_customer(store: Store) -> None:
    ref = store.customers.create(jurgen()).ref
    found = store.customers.find_by_customer_number("31415926")
    assert found is not None and found.ref == ref
    assert store.customers.find_by_customer_number("27182818") is None
    assert store.customers.find_by_customer_number("") is None


def test_customer_without_number_gets_an_eight_digit_one(store: Store) -> None:
    c = store.customers.create(jurgen(customer_number=None))
    assert c.customer_number is not None and len(c.customer_number) == 8
    assert store.customers.find_by_customer_number(c.customer_number) == c


def test_update_moves_the_phone_index(store: Store) -> None:
    ref = store.customers.create(jurgen()).ref
    updated = store.customers.update(ref, phones=(Phone("+49 171 1112223", "mobile"),),
                                     language="en")
    assert updated.language == "en" and updated.phones[0].receives_codes
    assert store.customers.find_by_phone("+4915123456789") is None
    assert store.customers.find_by_phone("+491711112223") == updated


def test_duplicate_customer_number_is_a_conflict_and_writes_nothing(store: Store) -> None:
    store.customers.create(jurgen())
    with store.db.session() as s:
        before = (s.scalar(select(func.count()).select_from(CustomerRow)),
                  s.scalar(select(func.count()).select_from(DataKeyRow)),
                  s.scalar(select(func.count()).select_from(PhoneRow)))
    with pytest.raises(Conflict):
        store.customers.create(jurgen(name=Name("Someone Else")))
    with store.db.session() as s:
        after = (s.scalar(select(func.count()).select_from(CustomerRow)),
                 s.scalar(select(func.count()).select_from(DataKeyRow)),
                 s.scalar(select(func.count()).select_from(PhoneRow)))
    assert after == before


def test_invalid_phone_is_rejected_before_anything_is_written(store: Store) -> None:
    with pytest.raises(InvalidInput) as err:
        store.customers.create(jurgen(phones=(Phone("+49 000 1"),)))
    assert "000" not in str(err.value)
    assert store.customers.list_refs() == []


def test_unknown_ref_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.customers.get("C-NOPE")


def test_no_personal_value_is_stored_in_plaintext(store: Store) -> None:
    c = store.customers.create(jurgen(totp_secret="JBSWY3DPEHPK3PXP"))
    raw = raw_database_bytes(store.db)
    for value in ("Jürgen", "Müllerstein", "4915123456789", "15123456789", "3098765432",
                  "juergen.muellerstein", "31415926", "JBSWY3DPEHPK3PXP"):
        for form in encodings(value):
            assert form not in raw, value
    assert c.ref.encode() in raw


def test_name_swapped_between_rows_fails_to_decrypt(store: Store) -> None:
    a = store.customers.create(jurgen(customer_number=None))
    b = store.customers.create(jurgen(customer_number=None, name=Name("Erika Muster")))
    with store.db.session() as s:
        row_a, row_b = s.get(CustomerRow, a.ref), s.get(CustomerRow, b.ref)
        assert row_a is not None and row_b is not None
        row_b.key_id, row_b.name_enc = row_a.key_id, row_a.name_enc  # even with a's key
    with pytest.raises(DecryptionFailed) as err:
        store.customers.get(b.ref)
    assert err.value.details == {"table": "customers", "column": "name", "row": b.ref}


def test_email_copied_into_name_column_fails_to_decrypt(store: Store) -> None:
    a = store.customers.create(jurgen())
    with store.db.session() as s:
        row = s.get(CustomerRow, a.ref)
        assert row is not None
        row.name_enc = row.email_enc
    with pytest.raises(DecryptionFailed, match=r"customers\.name"):
        store.customers.get(a.ref)


def test_flipped_byte_in_a_phone_fails_to_decrypt(store: Store) -> None:
    a = store.customers.create(jurgen())
    with store.db.session() as s:
        phone = s.scalars(select(PhoneRow).where(PhoneRow.customer_ref == a.ref)).first()
        assert phone is not None
        blob = bytearray(phone.number_enc)
        blob[-3] ^= 0x40
        phone.number_enc = bytes(blob)
    with pytest.raises(DecryptionFailed, match=r"customer_phones\.number"):
        store.customers.get(a.ref)


def test_concurrent_creates_from_threads_all_succeed(store: Store) -> None:
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for j in range(5):
                store.customers.create(jurgen(customer_number=f"9{i:03d}{j:04d}"))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.customers.list_refs()) == 30


def test_customer_data_round_trips_through_update(store: Store) -> None:
    c = store.customers.create(jurgen())
    same = store.customers.update(c.ref, **{f.name: getattr(c.data(), f.name)
                                           for f in dataclasses.fields(c.data())})
    assert same.data() == c.data()
