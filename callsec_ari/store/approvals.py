"""Approval records (migration 0010): one row per payment approval, signed when decided.

Plaintext columns: ids, the customer ref (as in ``captures``), the terms the customer approved
(amount, currency, payee: the business record the merchant needs to read; no card or account
data), the digest the code was bound to, results and times. The code itself is never stored.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from callsec_ari.store.models import Base, utcnow


class ApprovalRow(Base):
    __tablename__ = "approvals"

    approval_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), index=True)
    customer_ref: Mapped[str | None] = mapped_column(String(64), index=True)
    amount: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    payee: Mapped[str] = mapped_column(String(280))
    #: SHA-256 (hex) of amount, currency, payee and call id: what the code was bound to.
    digest: Mapped[str] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(128))
    #: ``approved`` | ``declined`` | ``failed``; empty while the caller is asked.
    result: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: HMAC-SHA256 (hex) of the canonical record (``approval/record.py``).
    signature: Mapped[str | None] = mapped_column(String(64))
