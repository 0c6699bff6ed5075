"""The staff login throttle on SQLite and PostgreSQL: every attempt is counted before it is
checked, under a row lock, so parallel attempts on two "nodes" (two engines on one database)
cannot slip past the limit, and refusals are aggregated in the audit trail."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from callsec_ari.access.errors import LoginDelayed, RateLimited
from callsec_ari.access.models import LoginThrottleRow
from callsec_ari.access.throttle import LOGIN, LoginThrottle
from callsec_ari.access.users import UserStore
from callsec_ari.config import Settings
from callsec_ari.store.context import Store, open_store

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def _throttle(store: Store, settings: Settings) -> LoginThrottle:
    return LoginThrottle(store.db, store.audit, settings.web, key=b"k" * 32)


def test_parallel_attempts_on_two_nodes_get_exactly_the_free_attempts(
        store: Store, settings: Settings) -> None:
    other = open_store(settings)
    try:
        nodes = [_throttle(store, settings), _throttle(other, settings)]

        def one(n: int) -> str:
            try:
                nodes[n % 2].begin(LOGIN, "anna", f"198.51.100.{n}", NOW)
            except LoginDelayed:
                return "delayed"
            return "counted"
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(24)))
    finally:
        other.close()
    assert results.count("counted") == settings.web.login_max_failures
    refused = [e for e in store.audit.tail(limit=1000) if e.action == "auth.login_refused"]
    assert 1 <= len(refused) <= 2  # one per node's first refusal at most, never one each


def test_an_address_is_limited_and_its_window_ends(store: Store, settings: Settings) -> None:
    throttle = _throttle(store, settings)
    limit = settings.web.login_max_failures * 4
    for n in range(limit):
        throttle.begin(LOGIN, f"guess{n}", "203.0.113.7", NOW)
    try:
        throttle.begin(LOGIN, "anna", "203.0.113.7", NOW)
        raise AssertionError("not limited")
    except RateLimited as exc:
        assert exc.retry_after == settings.web.login_lockout_seconds
    throttle.begin(LOGIN, "anna", "203.0.113.8", NOW)  # another address
    later = NOW + timedelta(seconds=settings.web.login_lockout_seconds)
    throttle.begin(LOGIN, "anna", "203.0.113.7", later)


def test_success_and_unlock_report_pending_refusals_and_drop_the_row(
        store: Store, settings: Settings) -> None:
    throttle = _throttle(store, settings)
    attempt = None
    for _ in range(settings.web.login_max_failures):
        attempt = throttle.begin(LOGIN, "nobody", "192.0.2.1", NOW)
    for _ in range(30):
        try:
            throttle.begin(LOGIN, "nobody", "192.0.2.1", NOW)
        except LoginDelayed:
            pass
    assert attempt is not None and attempt.label.startswith("unknown-user:")
    with store.db.session() as s:
        throttle.succeeded(s, attempt, NOW)
    with store.db.session() as s:
        assert s.scalars(select(LoginThrottleRow.key)
                         .where(LoginThrottleRow.key == attempt.account)).first() is None
    counts = [e.details["count"] for e in store.audit.tail(limit=1000)
              if e.action == "auth.login_refused"]
    assert counts == [1, 29]


def test_a_known_address_counts_apart_and_unlock_clears_it_too(
        store: Store, settings: Settings) -> None:
    UserStore(store.db, store.keys, store.audit).add(
        "anna", "agent", "correct horse battery staple", actor="test")
    throttle = _throttle(store, settings)
    first = throttle.begin(LOGIN, "anna", "198.51.100.9", NOW)
    with store.db.session() as s:
        throttle.succeeded(s, first, NOW)  # anna signed in from home
    for n in range(settings.web.login_max_failures):
        throttle.begin(LOGIN, "anna", f"203.0.113.{n}", NOW)  # an attacker elsewhere
    with pytest.raises(LoginDelayed):
        throttle.begin(LOGIN, "anna", "192.0.2.1", NOW)
    for _ in range(settings.web.login_max_failures):
        throttle.begin(LOGIN, "anna", "198.51.100.9", NOW)  # from home: her own count
    with pytest.raises(LoginDelayed):
        throttle.begin(LOGIN, "anna", "198.51.100.9", NOW)
    with store.db.session() as s:
        assert throttle.clear(s, "anna", NOW) == 2 * settings.web.login_max_failures
    throttle.begin(LOGIN, "anna", "198.51.100.9", NOW)
    throttle.begin(LOGIN, "anna", "192.0.2.1", NOW)
    throttle.prune(NOW + timedelta(days=2))  # failures go, the known address stays
    with store.db.session() as s:
        keys = [k.split(":")[0] for k in s.scalars(select(LoginThrottleRow.key))]
    assert keys == ["seen"]
