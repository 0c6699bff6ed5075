"""A verification attempt is on record from its look-up on: finishing it updates that row with
its audit entry in one transaction, and an attempt a dead callsec left open is closed as
``error`` (with its own audit entry) when the call is seen again."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from callsec_ari.store.context import Store
from callsec_ari.store.customers import CustomerData, Name, Phone
from callsec_ari.store.models import AuditRow, VerificationRow


def _customer(store: Store) -> str:
    return store.customers.create(CustomerData(
        name=Name("Ines Interrupted"), phones=(Phone("+4915123456781", receives_codes=True),))).ref


def _audit(store: Store, call_id: str, **extra: str) -> object:
    def audit(session: Session, vid: str) -> None:
        store.audit.append("system", "verification.finished", call_id,
                           {"verification_id": vid, **extra}, session=session)
    return audit


def test_an_open_attempt_is_closed_as_error_with_an_audit_entry(store: Store) -> None:
    ref = _customer(store)
    dead = store.records.start_verification("call-31", caller_number="+4915123456781",
                                            customer_ref=ref)
    done = store.records.record_verification(
        "call-31", caller_number=None, customer_ref=ref, method="sms", result="verified",
        attempts=1, sends=1)
    closed = store.records.close_open_verifications(
        "call-31", audit=_audit(store, "call-31", reason="interrupted"))  # type: ignore[arg-type]
    assert closed == [dead]
    with store.db.session() as s:
        row = s.get(VerificationRow, dead)
        assert row is not None and row.result == "error" and row.finished_at is not None
        other = s.get(VerificationRow, done)
        assert other is not None and other.result == "verified"  # finished ones stay as they are
        [entry] = s.scalars(select(AuditRow).where(AuditRow.target == "call-31"))
        assert dead in entry.details and "interrupted" in entry.details
    assert store.records.close_open_verifications("call-31") == []  # nothing left open
    assert store.audit.verify().ok


def test_finishing_an_opened_attempt_updates_it_with_its_audit_entry(store: Store) -> None:
    ref = _customer(store)
    vid = store.records.start_verification("call-32", caller_number="+4915123456781",
                                           customer_ref=ref)
    store.records.finish_verification(vid, result="locked", attempts=5, sends=1, method="sms",
                                      audit=_audit(store, "call-32"))  # type: ignore[arg-type]
    with store.db.session() as s:
        rows = list(s.scalars(select(VerificationRow).where(VerificationRow.call_id == "call-32")))
        assert [(r.result, r.attempts, r.method) for r in rows] == [("locked", 5, "sms")]
        assert s.scalars(select(AuditRow).where(AuditRow.target == "call-32")).one()
    assert store.records.close_open_verifications("call-32") == []
