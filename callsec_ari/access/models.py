"""Tables of staff access on the store's ``Base`` (migrations ``0002_access``, ``0006``).

* ``users``: staff accounts. ``password_hash`` is a scrypt string (never the password);
  ``totp_secret_enc`` is the TOTP secret encrypted under the user's data key (owner kind
  ``user``); ``totp_last_step`` is the time step of the last accepted code (replay guard).
* ``sessions``: only the SHA-256 of each opaque token is stored; ``last_seen_at`` is
  refreshed (at most once a minute) by authenticated requests, for the idle timeout
  (NULL: ``created_at``).
* ``login_throttle``: one row per account (``user:`` login,
  ``mfa:`` fresh MFA) or client address (``addr:``), keyed by a keyed hash of the name or
  address (a password typed as a user name is never stored): failures, the delay, and the
  count of refused attempts not yet reported in the audit trail. Shared by every node.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from callsec_ari.store.models import Base, utcnow


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    endpoint: Mapped[str | None] = mapped_column(String(64), unique=True)
    team: Mapped[str | None] = mapped_column(String(64), index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    key_id: Mapped[str] = mapped_column(ForeignKey("keys.key_id"))
    totp_secret_enc: Mapped[bytes] = mapped_column(LargeBinary)
    totp_last_step: Mapped[int | None] = mapped_column(Integer)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SessionRow(Base):
    __tablename__ = "sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         index=True)
    #: ``bearer`` (API clients) | ``cookie`` (the desk; CSRF-checked)
    kind: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    last_seen_at: Mapped[datetime | None] = mapped_column()


class LoginThrottleRow(Base):
    __tablename__ = "login_throttle"

    #: ``user:`` | ``mfa:`` | ``addr:`` + 32 hex digits of an HMAC
    key: Mapped[str] = mapped_column(String(48), primary_key=True)
    #: The audit target: a user name, ``unknown-user:<hash>`` or ``remote:<hash>``
    label: Mapped[str] = mapped_column(String(96))
    failures: Mapped[int] = mapped_column(Integer)
    first_failure_at: Mapped[datetime | None] = mapped_column()
    last_failure_at: Mapped[datetime | None] = mapped_column()
    blocked_until: Mapped[datetime | None] = mapped_column()
    #: Refused attempts since ``reported_at`` (not yet in the audit trail)
    refused: Mapped[int] = mapped_column(Integer)
    reported_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(index=True)
