"""A finished verification and its audit entry are one transaction (one write per call)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from callsec_ari.store.context import Store
from callsec_ari.store.customers import CustomerData, Name, Phone
from callsec_ari.store.models import AuditRow, VerificationRow


def _customer(store: Store) -> str:
    return store.customers.create(CustomerData(
        name=Name("Rita Record"), phones=(Phone("+4915123456780", receives_codes=True),))).ref


def test_recorded_verification_is_finished_and_audited_together(store: Store) -> None:
    ref = _customer(store)

    def audit(session: object, vid: str) -> None:
        store.audit.append("system", "verification.finished", "call-9",
                           {"verification_id": vid, "result": "verified"},
                           session=session)  # type: ignore[arg-type]

    vid = store.records.record_verification(
        "call-9", caller_number="+4915123456780", customer_ref=ref, method="sms",
        result="verified", attempts=1, sends=1, audit=audit)
    with store.db.session() as s:
        row = s.get(VerificationRow, vid)
        assert row is not None and row.result == "verified" and row.finished_at is not None
        assert (row.attempts, row.sends, row.method) == (1, 1, "sms")
        assert b"4915123456780" not in (row.caller_enc or b"")
        entry = s.scalars(select(AuditRow).where(AuditRow.target == "call-9")).one()
        assert vid in entry.details
    assert store.audit.verify().ok


def test_a_failing_audit_entry_leaves_no_verification_row(store: Store) -> None:
    ref = _customer(store)

    def audit(session: object, vid: str) -> None:
        raise RuntimeError("audit refused")

    with pytest.raises(RuntimeError):
        store.records.record_verification(
            "call-10", caller_number=None, customer_ref=ref, method="sms", result="failed",
            attempts=1, sends=1, audit=audit)
    with store.db.session() as s:
        assert s.scalar(select(func.count()).select_from(VerificationRow).where(
            VerificationRow.call_id == "call-10")) == 0


def test_failures_recorded_in_one_go_count_for_the_lockout(store: Store) -> None:
    from datetime import timedelta

    from callsec_ari.store.models import utcnow

    ref = _customer(store)
    for _ in range(2):
        store.records.record_verification("call-11", caller_number=None, customer_ref=ref,
                                          method="sms", result="failed", attempts=1, sends=1)
    assert len(store.records.failure_times(ref, utcnow() - timedelta(minutes=5))) == 2
