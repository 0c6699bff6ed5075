"""Capture rows (``captures``): metadata and the masked summary only (brand, last 4, lengths;
values live in the vault), each change with its audit entry. The capture slice reaches its rows
only through :class:`CaptureStore` (``Store.captures``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, select, text
from sqlalchemy.orm import Session

from callsec_ari.core.errors import InvalidInput
from callsec_ari.store.audit import AuditLog
from callsec_ari.store.db import Database, upsert_insert
from callsec_ari.store.models import CaptureRow, VaultItemRow, utcnow
from callsec_ari.store.records import iso

#: ``sealed``: the envelope sealed to the merchant's public key (``sink = sealed``): ciphertext
#: that nothing on callsec's side can open.
#: ``status``: ``cancelled`` | ``skipped`` for a field dropped from the capture (#18).
MASKED_KEYS = ("brand", "last4", "length", "lengths", "valid", "country", "attempts", "kind",
               "sealed", "status")
_CAPTURES = cast(Table, CaptureRow.__table__)
_USER_BY_ENDPOINT = text("SELECT name FROM users WHERE endpoint = :value")
_ENDPOINT_OF_USER = text("SELECT endpoint FROM users WHERE name = :value")


@dataclass(frozen=True, kw_only=True)
class StoredCapture:
    """A capture row as the API shows it (``requested_endpoint``: the endpoint the call rang,
    read back from the ``capture.requested`` audit entry)."""

    capture_id: str
    call_id: str
    result: str | None
    fields: dict[str, dict[str, Any]]
    vault_refs: dict[str, str]
    gateway_token: str | None
    finished_at: datetime | None
    media_evidence: dict[str, Any] | None
    requested_endpoint: str | None


class CaptureStore:
    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    # -- changes ----------------------------------------------------------------------------
    def save(self, capture_id: str, call_id: str, *, fields: Sequence[str],
             customer_ref: str | None = None, result: str | None = None,
             masked: Mapping[str, Any] | None = None, vault_refs: Mapping[str, str] | None = None,
             gateway_token: str | None = None, finished: bool = False,
             audit: Mapping[str, Any] | None = None) -> None:
        """Insert or update a capture's row (with ``audit``: and its ``capture.finished``
        entry, in one transaction). ``masked`` may hold only :data:`MASKED_KEYS` per field."""
        summary = {str(k): dict(v) for k, v in (masked or {}).items()}
        for per_field in summary.values():
            if set(per_field) - set(MASKED_KEYS):
                raise InvalidInput("masked capture summaries hold brand/last4/lengths only")
        values: dict[str, Any] = {
            "customer_ref": customer_ref, "fields": list(fields), "result": result,
            "masked": summary, "vault_refs": dict(vault_refs or {}),
            "gateway_token": gateway_token, **({"finished_at": utcnow()} if finished else {})}
        # one INSERT ... ON CONFLICT (was an ORM load, then a flush: 2.6x the CPU)
        with self.db.connect() as conn:
            insert = upsert_insert(conn.dialect.name, _CAPTURES).values(
                capture_id=capture_id, call_id=call_id, created_at=utcnow(), **values)
            conn.execute(insert.on_conflict_do_update(
                index_elements=[_CAPTURES.c.capture_id], set_=values))
            if audit is not None:
                self.audit.append("system", "capture.finished", capture_id, audit, session=conn)

    def requested(self, actor: str, capture_id: str, details: Mapping[str, Any],
                  agent: str | None) -> None:
        """The ``capture.requested`` entry, naming the user of endpoint ``agent``."""
        with self.db.connect() as s:
            user = s.scalar(_USER_BY_ENDPOINT, {"value": agent}) if agent else None
            self.audit.append(actor, "capture.requested", capture_id, {
                **details, **({"agent_user": user} if user else {})}, session=s)

    def close_open(self, call_id: str, reason: str) -> list[str]:
        """After a restart: the call's unfinished captures become ``cancelled``."""
        with self.db.session() as s:
            rows = s.scalars(select(CaptureRow).where(CaptureRow.call_id == call_id,
                                                      CaptureRow.result.is_(None))).all()
            for row in rows:
                row.result, row.finished_at = "cancelled", utcnow()
                row.masked, row.vault_refs, row.gateway_token = {}, {}, None
                self.audit.append("system", "capture.finished", row.capture_id, {
                    "call_id": call_id, "result": "cancelled", "reason": reason,
                    "fields": list(row.fields or [])}, session=s)
            return [row.capture_id for row in rows]

    def replace_fields(self, capture_id: str, replaces: Sequence[str],
                       vault_refs: Mapping[str, str], masked: Mapping[str, Any],
                       audit: Mapping[str, Any]) -> bool:
        """A re-opened capture: the new vault items replace the old ones (deleted), in one
        transaction with the ``capture.field_replaced`` entry. False: no such row."""
        with self.db.session() as s:
            row = s.get(CaptureRow, capture_id)
            if row is None:
                return False
            refs = {str(k): str(v) for k, v in dict(row.vault_refs or {}).items()}
            old = [refs.pop(kind) for kind in replaces if kind in refs]
            if old:
                s.execute(delete(VaultItemRow).where(VaultItemRow.ref.in_(old)))
            row.vault_refs = {**refs, **vault_refs}
            row.masked, row.result, row.finished_at = dict(masked), "captured", utcnow()
            self.audit.append("system", "capture.field_replaced", capture_id, audit, session=s)
            return True

    def set_media_evidence(self, capture_id: str, call_id: str,
                           signed: Mapping[str, object]) -> None:
        with self.db.session() as s:
            self._row(s, capture_id, call_id).media_evidence = dict(signed)

    # -- queries ----------------------------------------------------------------------------
    def get(self, capture_id: str, endpoint: str | None = None) -> StoredCapture | None:
        """``endpoint`` known: the audit entry is not read."""
        with self.db.session() as s:
            row = s.get(CaptureRow, capture_id)
            if row is None:
                return None
            return StoredCapture(
                capture_id=capture_id, call_id=row.call_id, result=row.result,
                fields={k: dict(v) for k, v in dict(row.masked or {}).items()},
                vault_refs={str(k): str(v) for k, v in dict(row.vault_refs or {}).items()},
                gateway_token=row.gateway_token, finished_at=row.finished_at,
                media_evidence=row.media_evidence,
                requested_endpoint=endpoint or self._requested_endpoint(s, capture_id))

    def vault_refs(self, capture_id: str) -> dict[str, str] | None:
        with self.db.session() as s:
            refs = s.execute(select(CaptureRow.vault_refs).where(
                CaptureRow.capture_id == capture_id)).scalar_one_or_none()
        return None if refs is None else {str(k): str(v) for k, v in dict(refs).items()}

    def _requested_endpoint(self, s: Session, capture_id: str) -> str | None:
        """After a restart: the endpoint of the user the call rang (``agent_user`` of the
        ``capture.requested`` entry), or the endpoint as the entry has it (older entries)."""
        for entry in self.audit.for_target(capture_id, session=s):
            if entry.action != "capture.requested":
                continue
            user = entry.details.get("agent_user")
            if isinstance(user, str):
                endpoint = s.scalar(_ENDPOINT_OF_USER, {"value": user})
                return str(endpoint) if endpoint is not None else None
            agent = entry.details.get("agent")
            return agent if isinstance(agent, str) else None
        return None

    @staticmethod
    def for_customer(s: Session, customer_ref: str) -> list[dict[str, Any]]:
        """The customer's captures, for a GDPR export."""
        return [{"capture_id": r.capture_id, "call_id": r.call_id, "fields": r.fields,
                 "result": r.result, "masked": r.masked, "vault_refs": r.vault_refs,
                 "created_at": iso(r.created_at), "finished_at": iso(r.finished_at)}
                for r in s.scalars(select(CaptureRow).where(CaptureRow.customer_ref == customer_ref)
                                   .order_by(CaptureRow.created_at))]

    @staticmethod
    def _row(s: Session, capture_id: str, call_id: str) -> CaptureRow:
        row = s.get(CaptureRow, capture_id)
        if row is None:
            row = CaptureRow(capture_id=capture_id, call_id=call_id, fields=[], masked={},
                             vault_refs={})
            s.add(row)
        return row
