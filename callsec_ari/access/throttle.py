"""Login throttling shared by every callsec node (table ``login_throttle``).

* **Per account** (``user:`` for logins, ``mfa:`` for fresh codes of a signed-in user): every
  attempt is counted *before* the password or code is checked (so parallel attempts cannot slip
  past the count); a success clears the account. From the ``[web] login_max_failures``-th
  failure on, the account waits ``login_delay_seconds``, doubling per further failure, at most
  ``login_lockout_seconds``: until then every attempt is refused (429 ``login_delayed``,
  ``Retry-After``) without checking anything. Known and unknown names are treated alike.
  Failures are forgotten after a success, ``callsec users unlock`` or :data:`FORGET` without a
  failure. Nothing here ends a session or locks an account for good.
* **Known client addresses count apart** (``pair:``): from an address the user signed in from
  within :data:`KNOWN_FOR` (``seen:``), login attempts are counted and delayed per user and
  address, so an attacker failing from elsewhere cannot keep the user out there.
* **Per client address** (``addr:``): 4 x ``login_max_failures`` failed logins per
  ``login_lockout_seconds`` window, then 429 ``rate_limited`` until the window ends.
* **Refusals are aggregated**: one ``auth.login_refused`` (``auth.mfa_refused``) audit entry
  per row and :data:`REPORT_EVERY`, with the count since the last one; the rest is reported
  when the row is cleared or pruned. A flood cannot fill the audit table.

Rows are keyed by an HMAC of the name or address (the blind-index key), so a password or card
number typed as a user name is never stored; the audit target of an unknown name is
``unknown-user:<hmac>``. A row is locked (``SELECT ... FOR UPDATE``; SQLite: the write lock
taken by the insert) before it is read, so nodes cannot race past a limit.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, delete, or_, select, update
from sqlalchemy.orm import Session

from callsec_ari.access import credentials as cred
from callsec_ari.access.errors import LoginDelayed, RateLimited
from callsec_ari.access.models import LoginThrottleRow, UserRow
from callsec_ari.config import WebSettings
from callsec_ari.core.errors import ConfigError
from callsec_ari.store.audit import AuditLog
from callsec_ari.store.db import Database, upsert_insert
from callsec_ari.store.models import as_utc

LOGIN, MFA, ADDRESS, PAIR, SEEN = "user", "mfa", "addr", "pair", "seen"
REMOTE_FACTOR = 4
FORGET = timedelta(hours=24)
KNOWN_FOR = timedelta(days=30)
REPORT_EVERY = timedelta(seconds=60)
PRUNE_EVERY = timedelta(seconds=60)
UNKNOWN_USER = "unknown-user:"
_REFUSED = {LOGIN: "auth.login_refused", ADDRESS: "auth.login_refused", PAIR: "auth.login_refused",
            MFA: "auth.mfa_refused"}
_T = LoginThrottleRow


def check_login_settings(web: WebSettings) -> None:
    """The ``[web]`` login and session keys; a bad value names its key."""
    ranges: Mapping[str, tuple[float, float]] = {
        "login_max_failures": (1, 100), "login_lockout_seconds": (1, 86400),
        "login_delay_seconds": (1, 3600), "session_ttl_seconds": (60, 31 * 86400),
        "session_idle_minutes": (0.01, 1440)}
    for key, (low, high) in ranges.items():
        if not low <= getattr(web, key) <= high:
            raise ConfigError(f"must be between {low:g} and {high:g}", section="web", key=key)
    if web.login_delay_seconds > web.login_lockout_seconds:
        raise ConfigError("must not exceed login_lockout_seconds", section="web",
                          key="login_delay_seconds")


def address_group(remote: str) -> str:
    """What the per-address limit counts: an IPv4 address, or an IPv6 address's /64 (one
    subscriber's prefix: rotating addresses inside it must not escape the limit)."""
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return remote


def _seconds(delta: timedelta) -> int:
    return max(1, math.ceil(delta.total_seconds()))


@dataclass(frozen=True)
class Attempt:
    """A counted attempt: its row keys, the account's audit target and the attempt's number."""

    account: str
    address: str | None
    label: str
    failures: int
    #: Seconds the account waits if this attempt fails (0: none)
    delay: int
    #: A short keyed hash of the client address, for audit details
    remote: str
    #: The ``seen:`` row a successful login records (logins only)
    seen: str | None = None


class LoginThrottle:
    def __init__(self, db: Database, audit: AuditLog, web: WebSettings, *, key: bytes) -> None:
        self.db = db
        self.audit = audit
        self.web = web
        self._key = key
        self._pruned: datetime | None = None
        ins = upsert_insert(db.dialect, cast(Table, _T.__table__))
        self._ensure = ins.on_conflict_do_nothing(index_elements=["key"])

    # -- keys and labels --------------------------------------------------------------------
    def _hmac(self, purpose: str, text: str) -> str:
        return hmac.new(self._key, f"{purpose}:{text}".encode(), hashlib.sha256).hexdigest()

    def account_key(self, kind: str, username: str) -> str:
        return f"{kind}:" + self._hmac("login-user", username)[:32]

    def address_key(self, remote: str) -> str:
        return f"{ADDRESS}:" + self._hmac("login-remote", address_group(remote))[:32]

    def _pair(self, username: str, remote: str) -> str:
        return self._hmac("login-pair", f"{username}\n{remote}")[:32]

    def _known(self, s: Session, seen: str, now: datetime) -> bool:
        row = s.get(_T, seen)
        return row is not None and now - as_utc(row.updated_at) < KNOWN_FOR

    def label(self, s: Session, username: str) -> str:
        """The audit target for ``username``: the name of an existing user, else a keyed hash
        (whatever was typed into the name field never reaches the audit trail)."""
        found = s.scalars(select(UserRow.id).where(UserRow.name == username)).first()
        if found is not None:
            return username
        return UNKNOWN_USER + self._hmac("login-user", username)[:20]

    # -- attempts -----------------------------------------------------------------------------
    def begin(self, kind: str, username: str, remote: str, now: datetime, *,
              per_address: bool = True) -> Attempt:
        """Count an attempt, or refuse it (:class:`LoginDelayed`, :class:`RateLimited`)
        without checking anything; the refusal is committed before it is raised."""
        account = self.account_key(kind, username)
        address = self.address_key(remote)
        seen = f"{SEEN}:" + self._pair(username, remote) if kind == LOGIN else None
        error: LoginDelayed | RateLimited | None = None
        with self.db.session() as s:
            if seen is not None and self._known(s, seen, now):
                account = f"{PAIR}:" + self._pair(username, remote)
            labels = {account: self.label(s, username)}
            if per_address:
                labels[address] = "remote:" + address[5:17]
            rows = self._lock(s, labels, now)
            acct, addr = rows[account], rows.get(address) if per_address else None
            error = self._refusal(s, acct, addr, now)
            delay = self._count(acct, addr, now) if error is None else 0
            attempt = Attempt(account, address if per_address else None, acct.label,
                              acct.failures, delay, address[5:17], seen)
        if error is not None:
            raise error
        return attempt

    def _lock(self, s: Session, labels: Mapping[str, str], now: datetime
              ) -> dict[str, LoginThrottleRow]:
        keys = sorted(labels)
        for key in keys:
            s.execute(self._ensure.values(key=key, label=labels[key], failures=0, refused=0,
                                          updated_at=now))
        rows = s.scalars(select(_T).where(_T.key.in_(keys)).order_by(_T.key)
                         .with_for_update().execution_options(populate_existing=True))
        found = {row.key: row for row in rows}
        for key, row in found.items():
            row.label = labels[key]
        return found

    def _refusal(self, s: Session, acct: LoginThrottleRow, addr: LoginThrottleRow | None,
                 now: datetime) -> LoginDelayed | RateLimited | None:
        window = timedelta(seconds=self.web.login_lockout_seconds)
        if addr is not None:
            if addr.first_failure_at is None or now - as_utc(addr.first_failure_at) >= window:
                addr.failures, addr.first_failure_at = 0, now
            if addr.failures >= self.web.login_max_failures * REMOTE_FACTOR:
                self._refused(s, addr, now)
                return RateLimited(_seconds(as_utc(addr.first_failure_at) + window - now))
        if acct.last_failure_at is not None and now - as_utc(acct.last_failure_at) >= FORGET:
            acct.failures, acct.first_failure_at, acct.blocked_until = 0, None, None
        if acct.blocked_until is not None and as_utc(acct.blocked_until) > now:
            self._refused(s, acct, now)
            return LoginDelayed(_seconds(as_utc(acct.blocked_until) - now))
        return None

    def _count(self, acct: LoginThrottleRow, addr: LoginThrottleRow | None,
               now: datetime) -> int:
        acct.failures += 1
        acct.first_failure_at = acct.first_failure_at or now
        acct.last_failure_at = acct.updated_at = now
        delay = cred.login_delay(acct.failures, max_failures=self.web.login_max_failures,
                                 first_delay=self.web.login_delay_seconds,
                                 cap=self.web.login_lockout_seconds)
        acct.blocked_until = now + timedelta(seconds=delay) if delay else None
        if addr is not None:
            addr.failures += 1
            addr.last_failure_at = addr.updated_at = now
        return delay

    # -- refusals in the audit trail ------------------------------------------------------------
    def _refused(self, s: Session, row: LoginThrottleRow, now: datetime) -> None:
        row.refused += 1
        row.updated_at = now
        if row.reported_at is None or now - as_utc(row.reported_at) >= REPORT_EVERY:
            self._report(s, row, now)

    def _report(self, s: Session, row: LoginThrottleRow, now: datetime) -> None:
        kind = row.key.split(":", 1)[0]
        details: dict[str, Any] = {"count": row.refused,
                                   "by": "address" if kind == ADDRESS else "account"}
        actor = f"user:{row.label}" if kind == MFA else "anonymous"
        self.audit.append(actor, _REFUSED[kind], row.label, details, session=s)
        row.refused, row.reported_at = 0, now

    # -- success, unlock, pruning -----------------------------------------------------------
    def succeeded(self, s: Session, attempt: Attempt, now: datetime) -> None:
        """The attempt was right: the account's failures are forgotten and the address's
        count gives this attempt back (within the caller's transaction)."""
        self._drop(s, [attempt.account], now)
        if attempt.address is not None:
            s.execute(update(_T).where(_T.key == attempt.address, _T.failures > 0)
                      .values(failures=_T.failures - 1))
        if attempt.seen is not None:
            s.execute(self._ensure.values(key=attempt.seen, label=attempt.label, failures=0,
                                          refused=0, updated_at=now))
            s.execute(update(_T).where(_T.key == attempt.seen).values(updated_at=now))

    def clear(self, s: Session, username: str, now: datetime) -> int:
        """``callsec users unlock``: forget the account's failures and delays (login, fresh
        MFA, per known address); returns the number of failures forgotten."""
        pairs = s.scalars(select(_T.key).where(_T.label == username,
                                               _T.key.startswith(f"{PAIR}:")))
        return self._drop(s, [self.account_key(k, username) for k in (LOGIN, MFA)]
                          + list(pairs), now)

    def _drop(self, s: Session, keys: list[str], now: datetime) -> int:
        rows = list(s.scalars(select(_T).where(_T.key.in_(sorted(keys))).order_by(_T.key)
                              .with_for_update()))
        for row in rows:
            if row.refused:
                self._report(s, row, now)
            s.delete(row)
        return sum(row.failures for row in rows)

    def prune(self, now: datetime) -> None:
        """Rows untouched for :data:`FORGET` go (their unreported refusals are reported);
        at most once per :data:`PRUNE_EVERY` per process."""
        if self._pruned is not None and now - self._pruned < PRUNE_EVERY:
            return
        self._pruned = now
        with self.db.session() as s:
            seen = _T.key.startswith(f"{SEEN}:")
            stale = or_(and_(~seen, _T.updated_at < now - FORGET),
                        and_(seen, _T.updated_at < now - KNOWN_FOR))
            for row in s.scalars(select(_T).where(stale, _T.refused > 0).order_by(_T.key)
                                 .with_for_update()):
                self._report(s, row, now)
            s.execute(delete(_T).where(stale))
