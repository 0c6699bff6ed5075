"""Vault: put / reveal / masked, CVV refused, reveals audited, tamper detected."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from store_helpers import jurgen, raw_database_bytes

from callsec_ari.core.errors import Forbidden, InvalidInput, NotFound
from callsec_ari.store.context import Store
from callsec_ari.store.errors import DecryptionFailed, VaultRefused
from callsec_ari.store.models import DataKeyRow, VaultItemRow

PAN = "4111111111111111"


def test_card_number_is_stored_encrypted_and_revealed_to_an_allowed_actor(store: Store) -> None:
    c = store.customers.create(jurgen())
    ref = store.vault.put("card_number", PAN, customer_ref=c.ref)
    assert ref.startswith("V-")
    assert store.vault.masked(ref) == "•••• 1111"
    assert PAN.encode() not in raw_database_bytes(store.db)
    value = store.vault.reveal(ref, actor="user:alice", reason="chargeback 77",
                               allowed=lambda kind: kind == "card_number")
    assert value == PAN
    last = store.audit.tail()[-1]
    assert (last.action, last.actor, last.target) == ("vault.reveal", "user:alice", ref)
    assert last.details == {"kind": "card_number", "reason": "chargeback 77"}


@pytest.mark.parametrize("kind", ["cvv", "CVC", "cvv2"])
def test_card_security_code_is_refused_by_design(store: Store, kind: str) -> None:
    with pytest.raises(VaultRefused) as err:
        store.vault.put(kind, "123", call_id="call-1")
    assert "123" not in str(err.value)
    with store.db.session() as s:
        assert s.scalars(select(VaultItemRow)).first() is None


def test_denied_reveal_is_audited_and_returns_nothing(store: Store) -> None:
    ref = store.vault.put("iban", "DE89370400440532013000", call_id="call-2")
    with pytest.raises(Forbidden):
        store.vault.reveal(ref, actor="user:bob", reason="curious", allowed=lambda kind: False)
    last = store.audit.tail()[-1]
    assert (last.action, last.actor) == ("vault.reveal_denied", "user:bob")


def test_reveal_needs_a_reason(store: Store) -> None:
    ref = store.vault.put("postal_code", "10115", call_id="call-3")
    with pytest.raises(InvalidInput):
        store.vault.reveal(ref, actor="a", reason="  ", allowed=lambda kind: True)


def test_reason_digits_are_blanked_in_the_audit_log(store: Store) -> None:
    ref = store.vault.put("card_number", PAN, call_id="call-4")
    store.vault.reveal(ref, actor="a", reason=f"customer read {PAN} to me",
                       allowed=lambda kind: True)
    assert PAN not in str(store.audit.tail()[-1].details)


def test_masks_per_kind(store: Store) -> None:
    masks = {kind: store.vault.masked(store.vault.put(kind, value, call_id="call-5"))
             for kind, value in [("iban", "DE89370400440532013000"), ("expiry", "12/29"),
                                 ("national_id", "12345678901"), ("postal_code", "10115")]}
    assert masks == {"iban": "DE•• •••• 3000", "expiry": "••/••",
                     "national_id": "<11 digits>", "postal_code": "<5 characters>"}


def test_values_of_one_call_share_the_call_key_even_when_stored_concurrently(
        store: Store) -> None:
    refs: list[str] = []
    threads = [threading.Thread(target=lambda: refs.append(
        store.vault.put("card_number", PAN, call_id="call-race"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(refs) == 8
    with store.db.session() as s:
        keys = s.scalars(select(DataKeyRow).where(DataKeyRow.owner_id == "call-race")).all()
        assert len(keys) == 1


def test_concurrent_puts_go_in_together_and_a_failing_row_fails_only_its_writer(
        store: Store) -> None:
    """Puts of concurrent writers share one INSERT on SQLite (each is its own on
    PostgreSQL); a row the database refuses (its ref already taken) raises in its own writer
    only (retried alone when it failed a group), the others are stored."""
    taken = store.vault.put("card_number", PAN, call_id="call-group")
    results: dict[int, object] = {}
    gate = threading.Barrier(12)

    def put(i: int) -> None:
        gate.wait()
        try:
            if i == 5:
                store.vault._group.insert(dict(_row_of(store, taken), ref=taken))
                results[i] = "stored"
            else:
                results[i] = store.vault.put("expiry", "12/29", call_id=f"call-group-{i}")
        except Exception as exc:
            results[i] = exc
    threads = [threading.Thread(target=put, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert isinstance(results.pop(5), IntegrityError)
    assert all(isinstance(ref, str) and store.vault.masked(ref) == "••/••"
               for ref in results.values()), results
    with store.db.session() as s:
        assert len(s.scalars(select(VaultItemRow)).all()) == 12


def _row_of(store: Store, ref: str) -> dict[str, object]:
    with store.db.session() as s:
        row = s.get(VaultItemRow, ref)
        assert row is not None
        return {c.name: getattr(row, c.name) for c in VaultItemRow.__table__.columns}


def test_vault_value_moved_to_another_item_fails_to_decrypt(store: Store) -> None:
    a = store.vault.put("card_number", PAN, call_id="call-6")
    b = store.vault.put("card_number", "5555555555554444", call_id="call-6")
    with store.db.session() as s:
        row_a, row_b = s.get(VaultItemRow, a), s.get(VaultItemRow, b)
        assert row_a is not None and row_b is not None
        row_b.value_enc = row_a.value_enc
    with pytest.raises(DecryptionFailed, match=f"vault_items.value of row {b}"):
        store.vault.masked(b)


def test_unknown_vault_ref_and_kind(store: Store) -> None:
    with pytest.raises(NotFound):
        store.vault.masked("V-NONE")
    with pytest.raises(InvalidInput):
        store.vault.put("password", "hunter2")


def test_item_without_owner_gets_its_own_key(store: Store) -> None:
    ref = store.vault.put("national_id", "12345678901")
    assert store.vault.reveal(ref, actor="a", reason="r", allowed=lambda k: True) == "12345678901"
