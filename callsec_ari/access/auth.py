"""Authentication: password + TOTP login, lockout and rate limits, opaque sessions, fresh MFA.

* Login needs the password and a current TOTP code; each code is accepted once (the user's
  ``totp_last_step`` only moves forward, by a conditional UPDATE, so two concurrent logins
  cannot both use it). Wrong password and wrong code get the same answer.
* ``[web] login_max_failures`` failures (password, code or fresh code) of one username within
  ``login_lockout_seconds`` lock it for that long (and end its sessions); an address with
  four times as many failures is rate limited. Unknown usernames are counted too.
* Sessions: ``secrets.token_urlsafe(32)`` tokens; the table holds only their SHA-256, with an
  expiry (``[web] session_ttl_seconds``); logout deletes the row.
* Every security event is appended to the audit trail.

All methods are synchronous (SQLAlchemy and scrypt); the web layer runs them in a thread.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from callsec_ari.access import credentials as cred
from callsec_ari.access.audit import AuditLog
from callsec_ari.access.errors import (
    AccountLocked,
    InvalidCredentials,
    MfaFailed,
    MfaRequired,
    RateLimited,
    SessionInvalid,
)
from callsec_ari.access.models import LoginFailureRow, SessionRow, UserRow
from callsec_ari.access.users import User, UserStore, to_user
from callsec_ari.config import WebSettings
from callsec_ari.store.db import Database, rowcount
from callsec_ari.store.models import as_utc, utcnow

log = logging.getLogger(__name__)

REMOTE_FACTOR = 4
MAX_USERNAME = 64
SESSION_KINDS = ("bearer", "cookie")


@dataclass(frozen=True)
class IssuedSession:
    token: str = field(repr=False)
    user: User
    kind: str
    expires_at: datetime

    @property
    def csrf_token(self) -> str:
        return cred.csrf_token_for(self.token)


@dataclass(frozen=True)
class Principal:
    """The signed-in user behind a request."""

    user: User
    kind: str
    expires_at: datetime
    token: str = field(repr=False)


class Auth:
    def __init__(self, db: Database, users: UserStore, audit: AuditLog, web: WebSettings, *,
                 remote_key: bytes, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.users = users
        self.audit = audit
        self.web = web
        self._remote_key = remote_key
        self.clock = clock

    # -- helpers --------------------------------------------------------------------------
    def remote_id(self, remote: str) -> str:
        """A keyed hash of the client address (the address itself is not stored)."""
        return hmac.new(self._remote_key, b"login-remote:" + remote.encode("utf-8"),
                        hashlib.sha256).hexdigest()[:32]

    def _failure_times(self, s: Session, now: datetime, *, username: str | None = None,
                       remote_id: str | None = None) -> list[datetime]:
        since = now - timedelta(seconds=self.web.login_lockout_seconds)
        query = select(LoginFailureRow.at).where(LoginFailureRow.at > since)
        if username is not None:
            query = query.where(LoginFailureRow.username == username)
        if remote_id is not None:
            query = query.where(LoginFailureRow.remote == remote_id)
        return [as_utc(t) for t in s.scalars(query)]

    def _locked_until(self, s: Session, username: str, now: datetime) -> datetime | None:
        return cred.lockout_until(
            self._failure_times(s, now, username=username), now,
            max_failures=self.web.login_max_failures,
            lockout_seconds=self.web.login_lockout_seconds)

    def _check_limits(self, username: str, remote_id: str, now: datetime) -> None:
        """Refuse (and audit) an attempt from a rate-limited address or on a locked account;
        the audit entry is committed before the error is raised."""
        error: AccountLocked | RateLimited | None = None
        with self.db.session() as s:
            blocked = cred.lockout_until(
                self._failure_times(s, now, remote_id=remote_id), now,
                max_failures=self.web.login_max_failures * REMOTE_FACTOR,
                lockout_seconds=self.web.login_lockout_seconds)
            until = self._locked_until(s, username, now)
            if blocked is not None:
                error = RateLimited(max(1, int((blocked - now).total_seconds())))
                self.audit.append("anonymous", "login.rate_limited", username,
                                  {"remote": remote_id[:12]}, session=s)
            elif until is not None:
                error = AccountLocked(max(1, int((until - now).total_seconds())))
                self.audit.append("anonymous", "login.locked", username, {}, session=s)
        if error is not None:
            raise error

    def _record_failure(self, username: str, remote_id: str, kind: str, action: str,
                        now: datetime, details: dict[str, object] | None = None) -> None:
        """One failed attempt; the one that reaches the limit locks the account and ends
        its sessions (a stolen session cannot brute-force fresh codes)."""
        with self.db.session() as s:
            s.add(LoginFailureRow(username=username, remote=remote_id, kind=kind, at=now))
            s.flush()
            self.audit.append(f"user:{username}" if kind == "fresh_totp" else "anonymous",
                              action, username, {"remote": remote_id[:12], **(details or {})},
                              session=s)
            until = self._locked_until(s, username, now)
            if until is not None:
                user = self.users.row(s, username)
                if user is not None:
                    s.execute(delete(SessionRow).where(SessionRow.user_id == user.id))
                self.audit.append("system", "login.lockout", username, {
                    "failures": self.web.login_max_failures,
                    "seconds": self.web.login_lockout_seconds}, session=s)
                log.warning("account locked after %d failed attempts",
                            self.web.login_max_failures)

    def _consume_totp(self, user_id: str, code: str, now: datetime) -> bool:
        """Check ``code`` against the user's secret and mark its time step used."""
        with self.db.session() as s:
            row = s.get(UserRow, user_id)
            if row is None:
                return False
            step = cred.totp_match_step(self.users.totp_secret(s, row), code, now,
                                        last_step=row.totp_last_step)
            if step is None:
                return False
            moved = s.execute(update(UserRow).where(
                UserRow.id == user_id,
                or_(UserRow.totp_last_step.is_(None), UserRow.totp_last_step < step),
            ).values(totp_last_step=step))
            return rowcount(moved) == 1

    def _prune(self, now: datetime) -> None:
        keep = timedelta(seconds=self.web.login_lockout_seconds)
        with self.db.session() as s:
            s.execute(delete(LoginFailureRow).where(LoginFailureRow.at < now - keep))
            s.execute(delete(SessionRow).where(SessionRow.expires_at < now))

    # -- login / sessions ---------------------------------------------------------------
    def login(self, username: str, password: str, otp: str, *, remote: str,
              kind: str = "bearer") -> IssuedSession:
        if kind not in SESSION_KINDS:
            raise ValueError(f"unknown session kind {kind!r}")
        now, remote_id = self.clock(), self.remote_id(remote)
        username = username[:MAX_USERNAME]
        self._prune(now)
        self._check_limits(username, remote_id, now)
        with self.db.session() as s:
            row = self.users.row(s, username)
            user = to_user(row) if row is not None else None
            stored = row.password_hash if row is not None else cred.DUMMY_HASH
        password_ok = cred.verify_password(password, stored)
        if user is None or user.disabled or not password_ok:
            reason = "unknown_user" if user is None else \
                "disabled" if user.disabled else "password"
            self._record_failure(username, remote_id, "password", "login.failed", now,
                                 {"reason": reason})
            raise InvalidCredentials()
        if not self._consume_totp(user.id, otp, now):
            self._record_failure(username, remote_id, "totp", "login.mfa_failed", now)
            raise InvalidCredentials()
        return self._issue(user, kind, remote_id, now)

    def _issue(self, user: User, kind: str, remote_id: str, now: datetime) -> IssuedSession:
        token = cred.new_token()
        expires = now + timedelta(seconds=self.web.session_ttl_seconds)
        with self.db.session() as s:
            s.execute(delete(LoginFailureRow).where(LoginFailureRow.username == user.name))
            s.add(SessionRow(token_hash=cred.token_hash(token), user_id=user.id, kind=kind,
                             created_at=now, expires_at=expires))
            self.audit.append(user.actor, "login.ok", user.name,
                              {"session": kind, "remote": remote_id[:12]}, session=s)
        return IssuedSession(token, user, kind, expires)

    def authenticate(self, token: str) -> Principal:
        """The session behind ``token``; :class:`SessionInvalid` if none, expired or the
        user is disabled."""
        if not token or len(token) > 256:
            raise SessionInvalid("not signed in")
        digest, now = cred.token_hash(token), self.clock()
        with self.db.session() as s:
            found = s.execute(select(SessionRow, UserRow).join(
                UserRow, UserRow.id == SessionRow.user_id).where(
                SessionRow.token_hash == digest)).one_or_none()
            if found is None:
                raise SessionInvalid("not signed in")
            session_row, user_row = found
            principal: Principal | None = None
            if as_utc(session_row.expires_at) > now:
                principal = Principal(to_user(user_row), session_row.kind,
                                      as_utc(session_row.expires_at), token)
            else:
                s.delete(session_row)
                self.audit.append(f"user:{user_row.name}", "session.expired", user_row.name,
                                  {}, session=s)
        if principal is None:
            raise SessionInvalid("the session has expired")
        if principal.user.disabled:
            raise SessionInvalid("not signed in")
        return principal

    def logout(self, principal: Principal) -> None:
        with self.db.session() as s:
            s.execute(delete(SessionRow).where(
                SessionRow.token_hash == cred.token_hash(principal.token)))
            self.audit.append(principal.user.actor, "logout", principal.user.name,
                              {"session": principal.kind}, session=s)

    # -- fresh MFA ------------------------------------------------------------------------
    def require_fresh_totp(self, user: User, otp: str | None, *, purpose: str,
                           remote: str) -> None:
        """A current, unused TOTP code of ``user`` (for ``reveal``); failures count towards
        the lockout like login failures."""
        if not otp:
            raise MfaRequired("a fresh code from the authenticator app is required")
        now, remote_id = self.clock(), self.remote_id(remote)
        self._check_limits(user.name, remote_id, now)
        if not self._consume_totp(user.id, otp, now):
            self._record_failure(user.name, remote_id, "fresh_totp", f"{purpose}.mfa_failed",
                                 now)
            raise MfaFailed("the code is wrong or was already used")
