"""Per-call records of verification attempts (caller number encrypted); capture rows are
:mod:`callsec_ari.store.captures`'."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session

from callsec_ari.core.errors import NotFound
from callsec_ari.core.masking import mask_phone
from callsec_ari.store.crypto import DataKey
from callsec_ari.store.db import Database, Executor, rowcount
from callsec_ari.store.errors import DecryptionFailed
from callsec_ari.store.keys import DataKeys
from callsec_ari.store.models import VerificationRow, as_utc, utcnow

T = "verifications"
#: Core statements on the table: a call's records are written on the caller's path, and the
#: ORM's unit of work cost 2-3x the CPU of one statement (``make bench``, #17).
_V = cast(Table, VerificationRow.__table__)
#: Audit callback: ``audit(transaction, verification_id)`` adds its entry to the transaction.
Audit = Callable[[Executor, str], object]


def iso(value: Any) -> str | None:
    return None if value is None else as_utc(value).isoformat()


class Records:
    def __init__(self, db: Database, keys: DataKeys) -> None:
        self.db = db
        self.keys = keys

    def _key(self, s: Executor, customer_ref: str | None, call_id: str) -> DataKey:
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
        with self.db.connect() as conn:
            return self._insert_verification(conn, call_id, caller_number, customer_ref,
                                             method=method, attempts=0, sends=0)

    def _insert_verification(self, s: Executor, call_id: str, caller_number: str | None,
                             customer_ref: str | None, **columns: Any) -> str:
        """One ``verifications`` row, the caller's number encrypted under the owner's key."""
        vid = "VF-" + secrets.token_hex(8)
        key = self._key(s, customer_ref, call_id)
        enc = None if not caller_number else key.encrypt(
            caller_number, table=T, column="caller", row_id=vid)
        s.execute(insert(_V).values(id=vid, call_id=call_id, customer_ref=customer_ref,
                                    key_id=key.key_id, caller_enc=enc, started_at=utcnow(),
                                    **columns))
        return vid

    def record_verification(self, call_id: str, *, caller_number: str | None,
                            customer_ref: str | None, method: str, result: str,
                            attempts: int, sends: int,
                            audit: Audit | None = None,
                            finished_at: datetime | None = None) -> str:
        """A finished verification in one transaction (what ``start_verification`` plus
        ``finish_verification`` record in two); ``audit(transaction, id)`` may add its audit
        entry to the same transaction. Returns the id (``VF-...``)."""
        with self.db.connect() as conn:
            vid = self._insert_verification(
                conn, call_id, caller_number, customer_ref, method=method, result=result,
                attempts=attempts, sends=sends, finished_at=finished_at or utcnow())
            if audit is not None:
                audit(conn, vid)
        return vid

    def finish_verification(self, verification_id: str, *, result: str, attempts: int = 0,
                            sends: int = 0, method: str | None = None,
                            customer_ref: str | None = None,
                            audit: Audit | None = None,
                            finished_at: datetime | None = None) -> None:
        """Close an attempt ``start_verification`` opened (finished now, or at ``finished_at``:
        a result written late); ``audit(transaction, id)`` may add its audit entry to the same
        transaction."""
        values: dict[str, Any] = {"result": result, "attempts": attempts, "sends": sends,
                                  "finished_at": finished_at or utcnow()}
        if method is not None:
            values["method"] = method
        if customer_ref is not None:
            values["customer_ref"] = customer_ref
        with self.db.connect() as conn:
            done = conn.execute(update(_V).where(_V.c.id == verification_id).values(values))
            if rowcount(done) == 0:
                raise NotFound("no such verification", details={"id": verification_id})
            if audit is not None:
                audit(conn, verification_id)

    def close_open_verifications(self, call_id: str, *, result: str = "error",
                                 audit: Audit | None = None) -> list[str]:
        """Close every attempt of ``call_id`` still open (one a dead callsec process left) as
        ``result``, with ``audit(transaction, id)`` for each in the same transaction; their
        ids."""
        with self.db.connect() as conn:
            ids = list(conn.scalars(select(_V.c.id).where(
                _V.c.call_id == call_id, _V.c.finished_at.is_(None))))
            if ids:
                conn.execute(update(_V).where(_V.c.id.in_(ids))
                             .values(result=result, finished_at=utcnow()))
            if audit is not None:
                for vid in ids:
                    audit(conn, vid)
            return ids

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
        with self.db.read() as conn:
            rows = conn.scalars(select(_V.c.started_at).where(
                _V.c.customer_ref == customer_ref, _V.c.result.in_(list(results)),
                _V.c.attempts > 0,  # a call refused while locked adds no failure
                _V.c.started_at >= since))
            return [as_utc(ts).timestamp() for ts in rows]
