"""Pending caller confirmations (table ``confirmations``, migration 0011).

A row is one chance for the customer to answer a verification message without typing the
code: by opening a one-time link (``token_hash``: SHA-256 of a 256-bit random token; the token
itself is never stored) and/or by replying to the SMS (``phone_bi``: the blind index of the
number the message went to). A row is answered at most once (``answered_at`` set in the same
UPDATE that checks it is still open) and not after ``expires_at`` (the code's expiry).
Plaintext columns hold ids, the call reference, the language and outcomes only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import DateTime, LargeBinary, String, select, update
from sqlalchemy.orm import Mapped, mapped_column

from callsec_ari.store.db import Database, rowcount
from callsec_ari.store.models import Base, as_utc, utcnow


class ConfirmationRow(Base):
    __tablename__ = "confirmations"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True,
                                                     unique=True)
    phone_bi: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True, index=True)
    call_id: Mapped[str] = mapped_column(String(128), index=True)
    call_ref: Mapped[str] = mapped_column(String(16))
    customer_ref: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), default="verification")
    #: ``approval``: the approval's id and its terms as shown ("49.90 EUR to ACME Energy")
    approval_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    terms: Mapped[str | None] = mapped_column(String(300), nullable=True)
    language: Mapped[str] = mapped_column(String(8), default="en")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                         nullable=True)
    #: ``confirmed`` | ``denied`` | ``closed`` (confirmed after the caller stopped waiting)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: ``link`` | ``sms_reply``
    answered_by: Mapped[str | None] = mapped_column(String(16), nullable=True)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(frozen=True, kw_only=True)
class Confirmation:
    id: str
    call_id: str
    call_ref: str
    customer_ref: str
    kind: str
    language: str
    created_at: datetime
    expires_at: datetime
    outcome: str | None
    approval_id: str | None = None
    terms: str | None = None

    @classmethod
    def of(cls, row: ConfirmationRow) -> Confirmation:
        return cls(id=row.id, call_id=row.call_id, call_ref=row.call_ref,
                   customer_ref=row.customer_ref, kind=row.kind, language=row.language,
                   created_at=as_utc(row.created_at), expires_at=as_utc(row.expires_at),
                   outcome=row.outcome, approval_id=row.approval_id, terms=row.terms)

    def open_at(self, now: datetime) -> bool:
        return self.outcome is None and now < self.expires_at


class Confirmations:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, *, id: str, call_id: str, call_ref: str, customer_ref: str, language: str,
            expires_at: datetime, token: str | None, phone_bi: bytes | None,
            kind: str = "verification", approval_id: str | None = None,
            terms: str | None = None) -> None:
        with self.db.session() as s:
            s.add(ConfirmationRow(
                id=id, token_hash=token_hash(token) if token else None, phone_bi=phone_bi,
                call_id=call_id, call_ref=call_ref, customer_ref=customer_ref, kind=kind,
                language=language, created_at=utcnow(), expires_at=expires_at,
                approval_id=approval_id, terms=terms))

    def by_token(self, token: str) -> Confirmation | None:
        with self.db.session() as s:
            row = s.scalars(select(ConfirmationRow).where(
                ConfirmationRow.token_hash == token_hash(token))).first()
            return None if row is None else Confirmation.of(row)

    def latest_for_phone(self, phone_bi: bytes, now: datetime) -> Confirmation | None:
        """The newest open, unexpired confirmation sent to this number."""
        with self.db.session() as s:
            row = s.scalars(select(ConfirmationRow).where(
                ConfirmationRow.phone_bi == phone_bi, ConfirmationRow.outcome.is_(None),
                ConfirmationRow.expires_at > now,
            ).order_by(ConfirmationRow.created_at.desc())).first()
            return None if row is None else Confirmation.of(row)

    def answer(self, confirmation_id: str, outcome: str, by: str, now: datetime) -> bool:
        """Close the row with ``outcome`` if it is still open and unexpired (single use)."""
        with self.db.session() as s:
            result = s.execute(update(ConfirmationRow).where(
                ConfirmationRow.id == confirmation_id, ConfirmationRow.outcome.is_(None),
                ConfirmationRow.expires_at > now,
            ).values(outcome=outcome, answered_by=by, answered_at=now))
            return rowcount(result) == 1
