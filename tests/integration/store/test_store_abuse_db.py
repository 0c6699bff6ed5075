"""The abuse-limit store on SQLite and PostgreSQL: counts are atomic with several writers (one
per thread, each its own connection, as several callsec nodes would be), kept in the database,
keyed by a keyed hash (no number in plaintext), and a TOTP step can be claimed only once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import text

from callsec_ari.store.abuse import Bucket, DbAbuseStore
from callsec_ari.store.context import Store

NUMBER = "+4915112345678"


def limits(store: Store) -> DbAbuseStore:
    return DbAbuseStore(store.db, store.keyring.blind_index_key())


def test_concurrent_writers_never_lose_a_count_nor_allow_more_than_the_limit(
        store: Store) -> None:
    now = time.time() // 3600 * 3600 + 10  # early in a fixed window: nothing carried over
    bucket = Bucket("send", f"caller:{NUMBER}", limit=5)

    def hit(_: int) -> bool:
        return not limits(store).take([bucket], now).over  # like another node: its own object

    with ThreadPoolExecutor(8) as pool:
        allowed = list(pool.map(hit, range(20)))
    assert sum(allowed) == 5
    with store.db.connect() as conn:
        assert conn.execute(text("SELECT SUM(count) FROM abuse_counters")).scalar_one() == 20


def test_wrong_codes_are_kept_per_customer_and_come_back_with_the_next_count(
        store: Store) -> None:
    first, now = limits(store), float(int(time.time()))
    for i in range(3):
        first.take([], now + i, failures_of="customer:C-1", failed=True, since=now - 60)
    other = limits(store)  # a restarted process or another node
    assert other.failures("customer:C-1", now - 60) == [now, now + 1, now + 2]
    assert other.failures("customer:C-2", now - 60) == []
    taken = other.take([], now + 3, failures_of="customer:C-1", since=now - 60)
    assert len(taken.failures) == 3  # read without recording one
    assert other.take([], now + 4, failures_of="customer:C-1", failed=True,
                      since=now + 1.5).failures \
        == (now + 2, now + 4)  # older ones fall out of the horizon (and are deleted)


def test_no_phone_number_or_customer_ref_is_stored_in_plaintext(store: Store) -> None:
    own, now = limits(store), time.time()
    own.take([Bucket("send", f"caller:{NUMBER}", 3), Bucket("send", "customer:C-9", 3)], now,
             failures_of="customer:C-9", failed=True, since=now - 60)
    own.claim_totp_step("customer:C-9", 123)
    with store.db.connect() as conn:
        dump = " ".join(str(row) for table in ("abuse_counters", "abuse_failures",
                                                 "totp_steps")
                        for row in conn.execute(text(f"SELECT * FROM {table}")))
    assert "4915112345678" not in dump and "C-9" not in dump


def test_a_totp_step_is_claimed_once_across_nodes(store: Store) -> None:
    a, b = limits(store), limits(store)
    assert a.last_totp_step("customer:C-1") is None
    assert a.claim_totp_step("customer:C-1", 100)
    assert not b.claim_totp_step("customer:C-1", 100)  # the replay, on another node
    assert not b.claim_totp_step("customer:C-1", 99)
    assert b.last_totp_step("customer:C-1") == 100
    assert b.claim_totp_step("customer:C-1", 101)
    assert a.claim_totp_step("customer:C-2", 100)  # per customer


def test_concurrent_claims_of_one_step_let_exactly_one_through(store: Store) -> None:
    with ThreadPoolExecutor(6) as pool:
        won = list(pool.map(lambda _: limits(store).claim_totp_step("customer:C-3", 7),
                            range(6)))
    assert sum(won) == 1


def test_rows_of_idle_subjects_are_purged_once_no_rule_needs_them(store: Store) -> None:
    own, now = limits(store), float(int(time.time()))
    own.take([Bucket("send", "customer:old", 3)], now - 3 * 3600, failures_of="customer:old",
             failed=True, since=now - 4 * 3600)
    # the next count an hour or more later purges, whoever's it is
    own.take([Bucket("send", "customer:new", 3)], now, failures_of="customer:new",
             failed=True, since=now - 60)
    with store.db.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM abuse_counters")).scalar_one() == 1
        assert conn.execute(text("SELECT COUNT(*) FROM abuse_failures")).scalar_one() == 1
    assert own.failures("customer:new", now - 60) == [now]
    assert own.purge(now - own.keep_seconds) == 0
    assert own.purge(now + 1) == 2  # nothing younger than ``before`` survives a purge


def test_concurrent_wrong_codes_for_one_customer_are_counted_one_after_another(
        store: Store) -> None:
    """Two nodes recording a wrong code for one customer at the same moment: each sees the
    other's (the lockout triggers on the same count as on one node)."""
    now = float(int(time.time()))
    barrier = threading.Barrier(8)

    def fail(i: int) -> int:
        own = limits(store)  # like another node: its own object and connection
        barrier.wait()
        return len(own.take([], now + i / 1000, failures_of="customer:C-RACE", failed=True,
                            since=now - 60).failures)

    for _ in range(3):
        with ThreadPoolExecutor(8) as pool:
            seen = sorted(pool.map(fail, range(8)))
        base = seen[0] - 1
        assert seen == [base + n for n in range(1, 9)]  # every count seen exactly once
