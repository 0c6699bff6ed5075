"""Hash-chained audit log: verification catches edits, deletions, insertions, truncation, a
moved head or anchor, a stripped head MAC, and exported heads no longer in the chain."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import delete, select, update

from callsec_ari.store.audit import GENESIS, AuditLog
from callsec_ari.store.context import Store
from callsec_ari.store.models import AuditHeadRow, AuditRow, utcnow


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


# -- the authenticated head and anchor (issue 14, point 7) -------------------------------

def _legacy_chain(store: Store, n: int) -> None:
    """Entries as callsec wrote them before schema 0007: old format, head without a MAC."""
    audit, prev = store.audit, GENESIS
    with store.db.session() as s:
        for seq in range(1, n + 1):
            ts = utcnow()
            digest = audit._digest(seq, ts, "system", "test.old", f"T-{seq}", "{}", prev,
                                   version=1)
            s.add(AuditRow(seq=seq, ts=ts, actor="system", action="test.old",
                           target=f"T-{seq}", details="{}", prev_hash=prev, hash=digest))
            prev = digest
        s.execute(update(AuditHeadRow).where(AuditHeadRow.id == 1)
                  .values(seq=n, hash=prev, mac=None))


def test_an_upgraded_chain_is_sealed_by_its_first_verify(store: Store) -> None:
    _legacy_chain(store, 3)
    result = store.audit.verify()
    assert result.ok and result.checked == 3 and "sealed now" in result.notes[0]
    assert store.audit.head().state == "sealed"
    fill(store.audit, 2)
    assert store.audit.verify().ok and store.audit.verify().notes == ()


def test_an_upgraded_chain_is_sealed_by_its_first_append(store: Store) -> None:
    _legacy_chain(store, 2)
    fill(store.audit, 1)
    assert store.audit.verify().ok
    with store.db.session() as s:  # strip the MAC again: the newest entry is new-format
        s.execute(update(AuditHeadRow).where(AuditHeadRow.id == 1).values(mac=None))
    result = store.audit.verify()
    assert not result.ok and "MAC was removed" in result.reason


def test_an_old_format_entry_after_new_ones_is_caught(store: Store) -> None:
    fill(store.audit, 2)
    last = store.audit.tail()[-1]
    ts = utcnow()
    digest = store.audit._digest(3, ts, "x", "y", "z", "{}", last.hash, version=1)
    with store.db.session() as s:
        s.add(AuditRow(seq=3, ts=ts, actor="x", action="y", target="z", details="{}",
                       prev_hash=last.hash, hash=digest))
    assert store.audit.verify().first_bad_seq == 3


def test_a_moved_anchor_fails_the_head_mac(store: Store) -> None:
    fill(store.audit, 5)
    second = store.audit.tail()[1]
    with store.db.session() as s:  # drop the two oldest entries and re-anchor the chain
        s.execute(delete(AuditRow).where(AuditRow.seq <= 2))
        s.execute(update(AuditHeadRow).where(AuditHeadRow.id == 1)
                  .values(base_seq=2, base_hash=second.hash))
    result = store.audit.verify()
    assert not result.ok and "MAC does not match" in result.reason


def test_retention_moves_the_anchor_with_a_valid_mac(store: Store) -> None:
    fill(store.audit, 4)
    with store.db.session() as s:
        s.execute(update(AuditRow).where(AuditRow.seq <= 2)
                  .values(ts=utcnow() - timedelta(days=400)))
    # the edited timestamps break entries 1-2, which the purge drops
    with store.db.connect() as conn:
        assert store.audit.purge_before(utcnow() - timedelta(days=1), session=conn) == 2
    assert store.audit.verify().ok
    head = store.audit.head()
    assert (head.base_seq, head.seq, head.state) == (2, 4, "sealed")


def test_concurrent_appends_leave_a_sealed_head(store: Store) -> None:
    test_concurrent_appends_keep_one_unbroken_chain(store)
    head = store.audit.head()
    assert head.state == "sealed" and head.seq == 90


def test_verify_against_exported_heads(store: Store) -> None:
    fill(store.audit, 3)
    old = store.audit.head()
    fill(store.audit, 2)
    assert store.audit.verify([(old.seq, old.hash), (0, GENESIS)]).ok
    assert "differs" in store.audit.verify([(old.seq, "0" * 64)]).reason
    newer = store.audit.verify([(9, "a" * 64)])
    assert not newer.ok and "rolled back" in newer.reason
