"""Per-call records of verification attempts (caller number encrypted); capture rows are
:mod:`callsec_ari.store.captures`'."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from callsec_ari.core.errors import NotFound
from callsec_ari.core.masking import mask_phone
from callsec_ari.store.crypto import DataKey
from callsec_ari.store.db import Database
from callsec_ari.store.errors import DecryptionFailed
from callsec_ari.store.keys import DataKeys
from callsec_ari.store.models import VerificationRow, as_utc, utcnow

T = "verifications"


def iso(value: Any) -> str | None:
    return None if value is None else as_utc(value).isoformat()


class Records:
    def __init__(self, db: Database, keys: DataKeys) -> None:
        self.db = db
        self.keys = keys

    def _key(self, s: Session, customer_ref: str | None, call_id: str) -> DataKey:
        if customer_ref is not None:
            key = self.keys.encryption_key(s, "customer", customer_ref, create=False)
            if key is None:
                raise NotFound("no such customer", details={"ref": customer_ref})
            return key
        found = self.keys.encryption_key(s, "call", call_id, create=True)
        assert found is not None
        return found

    def start_verification(self, call_id: str, *, caller_number: str | None,
                           customer_ref: str | None = None, method: str = "none") -> str:
        """Record a verification attempt; returns its id (``VF-...``)."""
        with self.db.session() as s:
            return self._insert_verification(s, call_id, caller_number, customer_ref,
                                             method=method, attempts=0, sends=0)

    def _insert_verification(self, s: Session, call_id: str, caller_number: str | None,
                             customer_ref: str | None, **columns: Any) -> str:
        """One ``verifications`` row, the caller's number encrypted under the owner's key."""
        vid = "VF-" + secrets.token_hex(8)
        key = self._key(s, customer_ref, call_id)
        enc = None if not caller_number else key.encrypt(
            caller_number, table=T, column="caller", row_id=vid)
        s.add(VerificationRow(id=vid, call_id=call_id, customer_ref=customer_ref,
                              key_id=key.key_id, caller_enc=enc, **columns))
        return vid

    def record_verification(self, call_id: str, *, caller_number: str | None,
                            customer_ref: str | None, method: str, result: str,
                            attempts: int, sends: int,
                            audit: Callable[[Session, str], object] | None = None,
                            finished_at: datetime | None = None) -> str:
        """A finished verification in one transaction (what ``start_verification`` plus
        ``finish_verification`` record in two); ``audit(session, id)`` may add its audit entry
        to the same transaction. Returns the id (``VF-...``)."""
        with self.db.session() as s:
            vid = self._insert_verification(
                s, call_id, caller_number, customer_ref, method=method, result=result,
                attempts=attempts, sends=sends, finished_at=finished_at or utcnow())
            if audit is not None:
                s.flush()
                audit(s, vid)
        return vid

    def finish_verification(self, verification_id: str, *, result: str, attempts: int = 0,
                            sends: int = 0, method: str | None = None,
                            customer_ref: str | None = None,
                            audit: Callable[[Session, str], object] | None = None,
                            finished_at: datetime | None = None) -> None:
        """Close an attempt ``start_verification`` opened (finished now, or at ``finished_at``:
        a result written late); ``audit(session, id)`` may add its audit entry to the same
        transaction."""
        with self.db.session() as s:
            row = s.get(VerificationRow, verification_id)
            if row is None:
                raise NotFound("no such verification", details={"id": verification_id})
            row.result, row.attempts, row.sends = result, attempts, sends
            row.finished_at = finished_at or utcnow()
            if method is not None:
                row.method = method
            if customer_ref is not None:
                row.customer_ref = customer_ref
            if audit is not None:
                audit(s, verification_id)

    def close_open_verifications(self, call_id: str, *, result: str = "error",
                                 audit: Callable[[Session, str], object] | None = None
                                 ) -> list[str]:
        """Close every attempt of ``call_id`` still open (one a dead callsec process left) as
        ``result``, with ``audit(session, id)`` for each in the same transaction; their ids."""
        with self.db.session() as s:
            rows = list(s.scalars(select(VerificationRow).where(
                VerificationRow.call_id == call_id, VerificationRow.finished_at.is_(None))))
            for row in rows:
                row.result, row.finished_at = result, utcnow()
                if audit is not None:
                    audit(s, row.id)
            return [row.id for row in rows]

    def verifications_for(self, s: Session, customer_ref: str) -> list[dict[str, Any]]:
        out = []
        for row in s.scalars(select(VerificationRow).where(
                VerificationRow.customer_ref == customer_ref).order_by(VerificationRow.started_at)):
            caller = None
            if row.caller_enc is not None and row.key_id is not None:
                try:
                    caller = self.keys.load(s, row.key_id).decrypt_text(
                        row.caller_enc, table=T, column="caller", row_id=row.id)
                except DecryptionFailed:
                    caller = None
            out.append({"id": row.id, "call_id": row.call_id, "method": row.method,
                        "result": row.result, "attempts": row.attempts, "sends": row.sends,
                        "started_at": iso(row.started_at), "finished_at": iso(row.finished_at),
                        "caller_number": caller, "caller_masked": mask_phone(caller)})
        return out

    def failure_times(self, customer_ref: str, since: datetime,
                      results: Sequence[str] = ("failed", "locked")) -> list[float]:
        """Start times (epoch seconds) of the customer's failed verifications since ``since``:
        the input of :class:`~callsec_ari.verification.limits.LockoutPolicy`."""
        with self.db.session() as s:
            rows = s.scalars(select(VerificationRow.started_at).where(
                VerificationRow.customer_ref == customer_ref,
                VerificationRow.result.in_(list(results)),
                VerificationRow.attempts > 0,  # a call refused while locked adds no failure
                VerificationRow.started_at >= since))
            return [as_utc(ts).timestamp() for ts in rows]
