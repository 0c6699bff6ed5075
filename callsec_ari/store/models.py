"""Tables of the encrypted store (SQLAlchemy 2 typed models).

Rule: a personal value lives only in a ``*_enc`` column (AES-GCM, see :mod:`.crypto`) or as a
blind index (``bi``, HMAC). Plaintext columns hold only non-personal data: opaque refs, ids,
languages, methods, results, counts, timestamps. ``users``/``sessions`` are added by the access
slice in a later migration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Datetimes come back naive from SQLite; everything is stored as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        datetime: DateTime(timezone=True),
        bytes: LargeBinary,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class DataKeyRow(Base):
    """A data key wrapped by KEK ``kek_version``; ``wrapped`` is NULL once shredded."""

    __tablename__ = "keys"
    __table_args__ = (UniqueConstraint("owner_kind", "owner_id"),)

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_kind: Mapped[str] = mapped_column(String(16))  # customer | call | item
    owner_id: Mapped[str] = mapped_column(String(64))
    kek_version: Mapped[int] = mapped_column(Integer, index=True)
    wrapped: Mapped[bytes | None]
    shredded: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    shredded_at: Mapped[datetime | None]


class KeyFingerprintRow(Base):
    """The key check value of a key the database depends on (``name``: ``kek`` with its
    version, ``blind-index`` or ``audit`` with version 0): never key material. Every start and
    command compares the key ring with these (:mod:`.custody`); ``retired_at`` is set when a
    KEK version is destroyed."""

    __tablename__ = "key_fingerprints"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]


class CustomerRow(Base):
    __tablename__ = "customers"

    ref: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("keys.key_id"))
    name_enc: Mapped[bytes | None]
    email_enc: Mapped[bytes | None]
    totp_secret_enc: Mapped[bytes | None]
    customer_number_enc: Mapped[bytes | None]
    uid_enc: Mapped[bytes | None]
    uid_bi: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    #: Blind index of the e-mail address (migration 0008): a card without a UID is matched by it.
    email_bi: Mapped[bytes | None] = mapped_column(LargeBinary(32), index=True)
    language: Mapped[str] = mapped_column(String(2), default="en")
    preferred_method: Mapped[str] = mapped_column(String(8), default="sms")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    erased_at: Mapped[datetime | None]


class PhoneRow(Base):
    __tablename__ = "customer_phones"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_ref: Mapped[str] = mapped_column(
        ForeignKey("customers.ref", ondelete="CASCADE"), index=True)
    bi: Mapped[bytes] = mapped_column(LargeBinary(32), index=True)
    kind: Mapped[str] = mapped_column(String(10))  # mobile | landline
    receives_codes: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int] = mapped_column(Integer, default=0)
    number_enc: Mapped[bytes]


class CustomerNumberRow(Base):
    """Blind index of the number a caller types on the keypad when the caller ID is unknown."""

    __tablename__ = "customer_numbers"

    bi: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    customer_ref: Mapped[str] = mapped_column(
        ForeignKey("customers.ref", ondelete="CASCADE"), unique=True)


class VerificationRow(Base):
    __tablename__ = "verifications"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), index=True)
    customer_ref: Mapped[str | None] = mapped_column(
        ForeignKey("customers.ref", ondelete="SET NULL"), index=True)
    key_id: Mapped[str | None] = mapped_column(ForeignKey("keys.key_id"))
    method: Mapped[str] = mapped_column(String(8), default="none")
    result: Mapped[str | None] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sends: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]
    caller_enc: Mapped[bytes | None]


class CaptureRow(Base):
    __tablename__ = "captures"

    capture_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), index=True)
    customer_ref: Mapped[str | None] = mapped_column(
        ForeignKey("customers.ref", ondelete="SET NULL"), index=True)
    fields: Mapped[list[Any]] = mapped_column(JSON, default=list)
    result: Mapped[str | None] = mapped_column(String(16))
    #: brand / last 4 / lengths only.
    masked: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    vault_refs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    gateway_token: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]
    #: Talk-through only: the relay's signed leak evidence (counts, no audio, no digits).
    media_evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class VaultItemRow(Base):
    __tablename__ = "vault_items"

    ref: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    customer_ref: Mapped[str | None] = mapped_column(
        ForeignKey("customers.ref", ondelete="SET NULL"), index=True)
    call_id: Mapped[str | None] = mapped_column(String(64), index=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("keys.key_id"))
    value_enc: Mapped[bytes | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class AuditRow(Base):
    """One hash-chained audit entry; ``details`` is canonical JSON without personal data."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(128))
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The chain's head (one row, id 1): locked by every append; ``base_*`` is the anchor
    left by retention purges (the last purged entry); ``mac`` authenticates both."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    base_seq: Mapped[int] = mapped_column(Integer)
    base_hash: Mapped[str] = mapped_column(String(64))
    #: HMAC (audit key) over seq, hash, base_seq and base_hash; NULL until sealed (0007).
    mac: Mapped[str | None] = mapped_column(String(64))
