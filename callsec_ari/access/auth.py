"""Authentication: password + TOTP login, growing delays, opaque sessions, idle timeout, fresh MFA.

* Login needs the password and a current TOTP code; each code is accepted once (the user's
  ``totp_last_step`` only moves forward, by a conditional UPDATE, so two concurrent logins
  cannot both use it). Wrong password and wrong code get the same answer.
* Failed attempts make the account wait, longer with every failure, and a client address that
  fails too often is rate limited (:mod:`.throttle`, shared by every node). A failed login
  never ends a session and never locks an account for good; an admin still can (``callsec
  users disable``). The address is the client's as a trusted proxy reports it (web layer).
* Sessions: ``secrets.token_urlsafe(32)`` tokens; the table holds only their SHA-256, with an
  expiry (``[web] session_ttl_seconds``) and the time last used: a session unused for
  ``[web] session_idle_minutes`` ends (PCI DSS 8.2.8); use refreshes it at most once a
  minute (background polls of the desk do not). Logout deletes the row.
* Every security event is appended to the audit trail; an unknown user name only as a keyed
  hash (``unknown-user:...``).

All methods are synchronous (SQLAlchemy and scrypt); the web layer runs them in a thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from callsec_ari.access import credentials as cred
from callsec_ari.access.errors import InvalidCredentials, MfaFailed, MfaRequired, SessionInvalid
from callsec_ari.access.models import SessionRow, UserRow
from callsec_ari.access.throttle import LOGIN, MFA, Attempt, LoginThrottle
from callsec_ari.access.users import User, UserStore, to_user
from callsec_ari.config import WebSettings
from callsec_ari.core.errors import NotFound
from callsec_ari.store.audit import AuditLog
from callsec_ari.store.db import Database, rowcount
from callsec_ari.store.models import as_utc, utcnow

log = logging.getLogger(__name__)

MAX_USERNAME = 64
SESSION_KINDS = ("bearer", "cookie")
#: A session's last use is written at most this often (and at most every quarter idle time).
TOUCH_EVERY = timedelta(seconds=60)


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
        self.throttle = LoginThrottle(db, audit, web, key=remote_key)
        self.clock = clock

    @property
    def idle(self) -> timedelta:
        return timedelta(minutes=self.web.session_idle_minutes)

    # -- helpers --------------------------------------------------------------------------
    def _failed(self, attempt: Attempt, actor: str, action: str,
                details: dict[str, object] | None = None) -> None:
        self.audit.append(actor, action, attempt.label, {
            "remote": attempt.remote, "failures": attempt.failures,
            "delay_seconds": attempt.delay, **(details or {})})
        if attempt.delay:
            log.warning("repeated failed attempts: the account waits %d s before the next",
                        attempt.delay, extra={"call_id": "-"})

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
        self.throttle.prune(now)
        with self.db.session() as s:
            s.execute(delete(SessionRow).where(SessionRow.expires_at < now))
            cutoff = now - self.idle
            s.execute(delete(SessionRow).where(or_(
                SessionRow.last_seen_at < cutoff,
                and_(SessionRow.last_seen_at.is_(None), SessionRow.created_at < cutoff))))

    # -- login / sessions ---------------------------------------------------------------
    def login(self, username: str, password: str, otp: str, *, remote: str,
              kind: str = "bearer") -> IssuedSession:
        """:class:`InvalidCredentials` for any wrong part; :class:`LoginDelayed` /
        :class:`RateLimited` (nothing checked) while the account or address must wait."""
        if kind not in SESSION_KINDS:
            raise ValueError(f"unknown session kind {kind!r}")
        now, username = self.clock(), username[:MAX_USERNAME]
        self._prune(now)
        attempt = self.throttle.begin(LOGIN, username, remote, now)
        with self.db.session() as s:
            row = self.users.row(s, username)
            user = to_user(row) if row is not None else None
            stored = row.password_hash if row is not None else cred.DUMMY_HASH
        password_ok = cred.verify_password(password, stored)
        if user is None or user.disabled or not password_ok:
            reason = "unknown_user" if user is None else \
                "disabled" if user.disabled else "password"
            self._failed(attempt, "anonymous", "login.failed", {"reason": reason})
            raise InvalidCredentials()
        if not self._consume_totp(user.id, otp, now):
            self._failed(attempt, "anonymous", "login.mfa_failed")
            raise InvalidCredentials()
        return self._issue(user, kind, attempt, now)

    def _issue(self, user: User, kind: str, attempt: Attempt, now: datetime) -> IssuedSession:
        token = cred.new_token()
        expires = now + timedelta(seconds=self.web.session_ttl_seconds)
        with self.db.session() as s:
            self.throttle.succeeded(s, attempt, now)
            s.add(SessionRow(token_hash=cred.token_hash(token), user_id=user.id, kind=kind,
                             created_at=now, expires_at=expires, last_seen_at=now))
            self.audit.append(user.actor, "login.ok", user.name,
                              {"session": kind, "remote": attempt.remote}, session=s)
        return IssuedSession(token, user, kind, expires)

    def authenticate(self, token: str, *, touch: bool = False) -> Principal:
        """The session behind ``token``; :class:`SessionInvalid` if none, expired, idle
        for longer than ``[web] session_idle_minutes`` or the user is disabled. ``touch``:
        a request of the user's (not a background poll or a stream's re-check): it counts
        as use of the session."""
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
            ended = self._ended(s, session_row, user_row.name, now)
            if ended is None:
                if touch:
                    self._touch(session_row, now)
                principal = Principal(to_user(user_row), session_row.kind,
                                      as_utc(session_row.expires_at), token)
        if ended is not None:
            raise SessionInvalid(ended)
        if principal.user.disabled:
            raise SessionInvalid("not signed in")
        return principal

    def _ended(self, s: Session, row: SessionRow, name: str, now: datetime) -> str | None:
        """Why the session is over (and then it is deleted and audited), or None."""
        seen = as_utc(row.last_seen_at or row.created_at)
        if as_utc(row.expires_at) <= now:
            action, why = "session.expired", "the session has expired"
        elif now - seen > self.idle:
            action, why = "session.idle", "the session was unused for too long: sign in again"
        else:
            return None
        s.delete(row)
        self.audit.append(f"user:{name}", action, name, {"session": row.kind}, session=s)
        return why

    def _touch(self, row: SessionRow, now: datetime) -> None:
        seen = as_utc(row.last_seen_at or row.created_at)
        if now - seen >= min(TOUCH_EVERY, self.idle / 4):
            row.last_seen_at = now

    def logout(self, principal: Principal) -> None:
        with self.db.session() as s:
            s.execute(delete(SessionRow).where(
                SessionRow.token_hash == cred.token_hash(principal.token)))
            self.audit.append(principal.user.actor, "logout", principal.user.name,
                              {"session": principal.kind}, session=s)

    def unlock(self, name: str, *, actor: str) -> int:
        """``callsec users unlock``: forget the user's failed attempts and end any delay
        (an admin's lock is ``users disable``); returns the number of failures forgotten."""
        now = self.clock()
        with self.db.session() as s:
            if self.users.row(s, name) is None:
                raise NotFound("no such user", details={"username": name})
            count = self.throttle.clear(s, name, now)
            self.audit.append(actor, "user.unlock", name, {"failures": count}, session=s)
        return count

    # -- fresh MFA ------------------------------------------------------------------------
    def require_fresh_totp(self, user: User, otp: str | None, *, purpose: str,
                           remote: str) -> None:
        """A current, unused TOTP code of ``user`` (for ``reveal``). Failures make the
        user's fresh-MFA checks wait like login failures (a separate count: outsiders
        failing at the login door cannot block a signed-in user's reveals)."""
        if not otp:
            raise MfaRequired("a fresh code from the authenticator app is required")
        now = self.clock()
        attempt = self.throttle.begin(MFA, user.name, remote, now, per_address=False)
        if not self._consume_totp(user.id, otp, now):
            self._failed(attempt, user.actor, f"{purpose}.mfa_failed")
            raise MfaFailed("the code is wrong or was already used")
        with self.db.session() as s:
            self.throttle.succeeded(s, attempt, now)
