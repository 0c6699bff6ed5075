"""GDPR export, erasure by crypto-shredding, retention purge."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from store_helpers import encodings, jurgen, raw_database_bytes

from callsec_ari.store.context import Store
from callsec_ari.store.errors import CustomerErased, DataKeyDestroyed
from callsec_ari.store.gdpr import Gdpr
from callsec_ari.store.models import (
    AuditRow,
    CaptureRow,
    CustomerNumberRow,
    DataKeyRow,
    PhoneRow,
    VaultItemRow,
    VerificationRow,
    utcnow,
)

PERSONAL = ("Jürgen", "Müllerstein", "4915123456789", "15123456789", "3098765432",
            "juergen.muellerstein@example.org", "31415926")


def history(store: Store, ref: str) -> tuple[str, str]:
    vid = store.records.start_verification("call-77", caller_number="+4915123456789",
                                           customer_ref=ref, method="sms")
    store.records.finish_verification(vid, result="verified", attempts=1, sends=1)
    vault_ref = store.vault.put("card_number", "4111111111111111", customer_ref=ref,
                                call_id="call-77")
    store.captures.save("cap-1", "call-77", customer_ref=ref,
                               fields=["card_number", "expiry", "cvv"], result="captured",
                               masked={"card_number": {"brand": "visa", "last4": "1111",
                                                       "length": 16}},
                               vault_refs={"card_number": vault_ref}, finished=True)
    return vid, vault_ref


def test_export_holds_profile_history_masked_captures_and_vcard(store: Store) -> None:
    c = store.customers.create(jurgen())
    vid, vault_ref = history(store, c.ref)
    doc = Gdpr(store).export(c.ref, actor="cli:test")
    assert doc["profile"]["name"]["full"] == "Jürgen Müllerstein"
    assert doc["profile"]["phones"][0]["number"] == "+4915123456789"
    assert doc["verifications"][0]["id"] == vid
    assert doc["verifications"][0]["result"] == "verified"
    assert doc["verifications"][0]["caller_number"] == "+4915123456789"
    assert doc["captures"][0]["masked"]["card_number"]["last4"] == "1111"
    assert doc["vault_items"] == [{"ref": vault_ref, "kind": "card_number",
                                   "masked": "•••• 1111", "call_id": "call-77",
                                   "created_at": doc["vault_items"][0]["created_at"]}]
    assert "4111111111111111" not in str(doc)
    assert "BEGIN:VCARD" in doc["vcard"] and "Müllerstein" in doc["vcard"]
    assert any(e["action"] == "customer.create" for e in doc["audit"])
    assert store.audit.tail()[-1].action == "gdpr.export"


def test_erase_shreds_keys_and_leaves_no_personal_bytes(store: Store) -> None:
    c = store.customers.create(jurgen())
    _, vault_ref = history(store, c.ref)
    with store.db.session() as s:
        wrapped = [w for w in s.scalars(select(DataKeyRow.wrapped)) if w]
    report = Gdpr(store).erase(c.ref, actor="cli:test")
    assert report.keys_shredded == 1 and report.phones_deleted == 2
    with pytest.raises(CustomerErased):
        store.customers.get(c.ref)
    with pytest.raises(DataKeyDestroyed):
        with store.db.session() as s:
            store.keys.load(s, s.scalars(select(DataKeyRow.key_id)).one())
    with store.db.session() as s:
        assert s.scalar(select(func.count()).select_from(PhoneRow)) == 0
        assert s.scalar(select(func.count()).select_from(CustomerNumberRow)) == 0
        assert s.scalars(select(VaultItemRow.value_enc)).one() is None
        assert s.scalars(select(VerificationRow.caller_enc)).one() is None
        assert s.scalars(select(CaptureRow.masked)).one() == {}
    assert store.customers.find_by_phone("+4915123456789") is None
    assert store.customers.find_by_customer_number("31415926") is None
    raw = raw_database_bytes(store.db)
    for value in PERSONAL:
        for form in encodings(value):
            assert form not in raw, value
    for blob in wrapped:
        assert blob not in raw
    assert c.ref.encode() in raw  # the tombstone
    assert store.audit.verify().ok
    assert Gdpr(store).erase(c.ref, actor="cli:test").already_erased
    assert vault_ref


def test_erase_keeps_other_customers_readable(store: Store) -> None:
    a = store.customers.create(jurgen())
    b = store.customers.create(jurgen(customer_number="27182818"))
    Gdpr(store).erase(a.ref, actor="t")
    assert store.customers.get(b.ref) == b
    assert store.customers.list_refs() == [b.ref]


def test_purge_deletes_what_is_past_retention_and_keeps_the_chain(store: Store) -> None:
    c = store.customers.create(jurgen())
    old_v = store.records.start_verification("call-old", caller_number="+4915123456789",
                                             customer_ref=c.ref)
    store.records.start_verification("call-new", caller_number="+4915123456789",
                                     customer_ref=c.ref)
    store.records.start_verification("call-anon", caller_number="+491701234567")
    store.vault.put("card_number", "4111111111111111", call_id="call-old")
    store.captures.save("cap-old", "call-old", fields=["card_number"])
    long_ago = utcnow() - timedelta(days=400)
    with store.db.session() as s:
        s.execute(update(VerificationRow).where(VerificationRow.call_id.in_(
            ["call-old", "call-anon"])).values(started_at=long_ago))
        s.execute(update(CaptureRow).values(created_at=long_ago))
        s.execute(update(VaultItemRow).values(created_at=long_ago))
        s.execute(update(DataKeyRow).where(DataKeyRow.owner_kind == "call")
                  .values(created_at=long_ago))
        s.execute(update(AuditRow).where(AuditRow.seq == 1)
                  .values(ts=utcnow() - timedelta(days=4000)))
    counts = Gdpr(store).purge(actor="cli:test")
    assert counts == {"unknown_callers": 1, "verifications": 1, "captures": 1,
                      "vault_items": 1, "call_keys": 2, "audit": 1}
    assert store.audit.verify().ok  # anchored at the last purged entry
    assert store.audit.tail()[-1].action == "gdpr.purge"
    with store.db.session() as s:
        assert s.scalars(select(VerificationRow.call_id)).all() == ["call-new"]
    assert store.customers.get(c.ref) == c
    assert old_v


def test_no_new_value_is_stored_for_an_erased_customer(store: Store) -> None:
    c = store.customers.create(jurgen())
    store.vault.put("iban", "DE89370400440532013000", customer_ref=c.ref)  # key now cached
    Gdpr(store).erase(c.ref, actor="t")
    with pytest.raises(DataKeyDestroyed):
        store.vault.put("iban", "DE89370400440532013000", customer_ref=c.ref)


def test_failure_times_feed_the_lockout_policy(store: Store) -> None:
    c = store.customers.create(jurgen())
    before = utcnow()
    for result in ("failed", "verified", "locked", "failed"):
        vid = store.records.start_verification("call-x", caller_number=None, customer_ref=c.ref)
        store.records.finish_verification(vid, result=result, attempts=1)
    times = store.records.failure_times(c.ref, before - timedelta(seconds=1))
    assert len(times) == 3
    assert before.timestamp() - 1 <= times[0] <= utcnow().timestamp()
    assert store.records.failure_times(c.ref, utcnow() + timedelta(seconds=5)) == []
