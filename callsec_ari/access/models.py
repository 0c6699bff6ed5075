"""Tables of staff access on the store's ``Base`` (migration ``0002_access``).

* ``users``: staff accounts. ``password_hash`` is a scrypt string (never the password);
  ``totp_secret_enc`` is the TOTP secret encrypted under the user's data key (owner kind
  ``user``); ``totp_last_step`` is the time step of the last accepted code (replay guard).
* ``sessions``: only the SHA-256 of each opaque token is stored.
* ``login_failures``: failed logins and failed fresh-MFA checks, for lockout and rate limits;
  ``remote`` is a keyed hash of the client address, not the address.
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


class LoginFailureRow(Base):
    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    remote: Mapped[str] = mapped_column(String(64), index=True)
    #: ``password`` | ``totp`` | ``fresh_totp``
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(index=True)
