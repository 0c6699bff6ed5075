"""Hash-chained audit log: verification catches edits, deletions, insertions, truncation."""

from __future__ import annotations

import threading

from sqlalchemy import delete, select, update

from callsec_ari.access.audit import AuditLog
from callsec_ari.store.context import Store
from callsec_ari.store.models import AuditRow, utcnow


def fill(audit: AuditLog, n: int = 5) -> None:
    for i in range(n):
        audit.append("user:alice", "test.action", f"T-{i}", {"i": i})


def test_untouched_chain_verifies(store: Store) -> None:
    fill(store.audit)
    result = store.audit.verify()
    assert result.ok and result.checked == 5 and result.first_bad_seq is None


def test_empty_chain_verifies(store: Store) -> None:
    assert store.audit.verify().ok


def test_edited_row_is_named(store: Store) -> None:
    fill(store.audit)
    with store.db.session() as s:
        s.execute(update(AuditRow).where(AuditRow.seq == 3).values(actor="user:mallory"))
    result = store.audit.verify()
    assert not result.ok and result.first_bad_seq == 3 and "edited" in result.reason


def test_edited_details_are_caught(store: Store) -> None:
    fill(store.audit)
    with store.db.session() as s:
        s.execute(update(AuditRow).where(AuditRow.seq == 2).values(details='{"i":9}'))
    assert store.audit.verify().first_bad_seq == 2


def test_deleted_row_is_named(store: Store) -> None:
    fill(store.audit)
    with store.db.session() as s:
        s.execute(delete(AuditRow).where(AuditRow.seq == 2))
    result = store.audit.verify()
    assert not result.ok and result.first_bad_seq == 2 and "deleted" in result.reason


def test_truncated_tail_is_caught(store: Store) -> None:
    fill(store.audit)
    with store.db.session() as s:
        s.execute(delete(AuditRow).where(AuditRow.seq == 5))
    result = store.audit.verify()
    assert not result.ok and result.first_bad_seq == 5


def test_inserted_row_is_named(store: Store) -> None:
    fill(store.audit)
    with store.db.session() as s:
        rows = s.scalars(select(AuditRow).where(AuditRow.seq >= 3)
                         .order_by(AuditRow.seq.desc())).all()
        for row in rows:  # make room at 3, as a forger would
            row.seq += 1
            s.flush()
        prev = s.get(AuditRow, 2)
        assert prev is not None
        s.add(AuditRow(seq=3, ts=utcnow(), actor="user:mallory", action="test.action",
                       target="T-x", details="{}", prev_hash=prev.hash, hash="f" * 64))
    result = store.audit.verify()
    assert not result.ok and result.first_bad_seq == 3


def test_forged_row_appended_at_the_end_is_caught(store: Store) -> None:
    fill(store.audit)
    last = store.audit.tail()[-1]
    with store.db.session() as s:
        s.add(AuditRow(seq=6, ts=utcnow(), actor="x", action="y", target="z", details="{}",
                       prev_hash=last.hash, hash="e" * 64))
    assert store.audit.verify().first_bad_seq == 6


def test_chain_built_without_hmac_key_fails_with_it(store: Store) -> None:
    plain = AuditLog(store.db)
    fill(plain, 2)
    assert plain.verify().ok
    assert store.audit.verify().first_bad_seq == 1  # keyed verification rejects forgeries


def test_concurrent_appends_keep_one_unbroken_chain(store: Store) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(15):
                store.audit.append(f"worker:{n}", "test.concurrent", f"T-{n}-{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    entries = store.audit.tail(limit=1000)
    assert [e.seq for e in entries] == list(range(1, 91))
    assert store.audit.verify().ok


def test_tail_since_seq(store: Store) -> None:
    fill(store.audit)
    assert [e.seq for e in store.audit.tail(3)] == [4, 5]
    assert store.audit.tail(2)[0].details == {"i": 2}
