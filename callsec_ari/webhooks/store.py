"""Dead letters of the webhooks (table ``webhook_dead_letters``, migration 0009).

A row is an event one URL did not take after the last try (or could not be queued, or was
still queued when callsec stopped). The body is the masked event as sent (ids, results,
brands, last digits; no code, PAN, phone number or name), but approval and "not me" events
name a customer ref, an amount and a payee: personal data, so the body is encrypted under the
call's data key (``body_enc``, AES-256-GCM bound to table, column, event id and key id) and
goes with that key when the call's data is erased. The URL's secret is never stored.
``callsec webhooks retry`` re-sends pending rows in order and sets ``delivered_at``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, LargeBinary, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from callsec_ari.core.errors import CallsecError
from callsec_ari.store.db import Database
from callsec_ari.store.keys import DataKeys
from callsec_ari.store.models import Base, as_utc, utcnow

TABLE = "webhook_dead_letters"


class WebhookDeadLetterRow(Base):
    __tablename__ = TABLE
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(40), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    call_id: Mapped[str] = mapped_column(String(128))
    url: Mapped[str] = mapped_column(String(2000))
    key_id: Mapped[str] = mapped_column(ForeignKey("keys.key_id"))
    body_enc: Mapped[bytes] = mapped_column(LargeBinary)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str] = mapped_column(String(32))
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                             nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                          nullable=True, index=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewDeadLetter:
    event_id: str
    event_type: str
    call_id: str
    url: str
    #: empty when the call's data key was erased (the letter cannot be sent any more)
    body: bytes
    attempts: int
    reason: str
    http_status: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter(NewDeadLetter):
    id: int
    created_at: datetime
    delivered_at: datetime | None

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "event_id": self.event_id, "type": self.event_type,
                "call_id": self.call_id, "url": self.url, "attempts": self.attempts,
                "reason": self.reason, "http_status": self.http_status,
                "created_at": self.created_at.isoformat(),
                "delivered_at": self.delivered_at.isoformat() if self.delivered_at else None}


def _body(s: Session, keys: DataKeys, row: WebhookDeadLetterRow) -> bytes:
    try:
        return keys.load(s, row.key_id).decrypt(row.body_enc, table=TABLE, column="body",
                                                row_id=row.event_id)
    except CallsecError:  # the call's key was erased (crypto-shredding)
        return b""


def _letter(row: WebhookDeadLetterRow, body: bytes) -> DeadLetter:
    return DeadLetter(id=row.id, event_id=row.event_id, event_type=row.event_type,
                      call_id=row.call_id, url=row.url, body=body,
                      attempts=row.attempts, reason=row.reason, http_status=row.http_status,
                      created_at=as_utc(row.created_at),
                      delivered_at=as_utc(row.delivered_at) if row.delivered_at else None)


class DeadLetters:
    """Blocking (call from a worker thread); raises ``DatabaseUnavailable``."""

    def __init__(self, db: Database, keys: DataKeys) -> None:
        self.db = db
        self.keys = keys

    def add(self, letter: NewDeadLetter) -> int:
        with self.db.session() as s:
            key = self.keys.encryption_key(s, "call", letter.call_id, create=True)
            assert key is not None
            row = WebhookDeadLetterRow(
                event_id=letter.event_id, event_type=letter.event_type, call_id=letter.call_id,
                url=letter.url, key_id=key.key_id, attempts=letter.attempts,
                body_enc=key.encrypt(letter.body, table=TABLE, column="body",
                                     row_id=letter.event_id),
                reason=letter.reason, http_status=letter.http_status,
                last_attempt_at=utcnow() if letter.attempts else None)
            s.add(row)
            s.flush()
            return row.id

    def list(self, *, pending_only: bool = True, ids: Sequence[int] = (),
             limit: int = 1000) -> list[DeadLetter]:
        query = select(WebhookDeadLetterRow).order_by(WebhookDeadLetterRow.id).limit(limit)
        if pending_only:
            query = query.where(WebhookDeadLetterRow.delivered_at.is_(None))
        if ids:
            query = query.where(WebhookDeadLetterRow.id.in_(list(ids)))
        with self.db.session() as s:
            return [_letter(row, _body(s, self.keys, row)) for row in s.scalars(query)]

    def tried(self, letter_id: int, *, delivered: bool, reason: str = "",
              http_status: int | None = None) -> None:
        values: dict[str, object] = {
            "attempts": WebhookDeadLetterRow.attempts + 1, "last_attempt_at": utcnow()}
        if delivered:
            values["delivered_at"] = utcnow()
        else:
            values.update(reason=reason, http_status=http_status)
        with self.db.session() as s:
            s.execute(update(WebhookDeadLetterRow)
                      .where(WebhookDeadLetterRow.id == letter_id).values(**values))
