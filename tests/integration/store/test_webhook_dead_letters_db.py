"""Webhook dead letters on SQLite and PostgreSQL: the body round-trips encrypted, pending ones
list in order, a delivered one leaves the pending list, a failed try is counted."""

from __future__ import annotations

from sqlalchemy import select

from callsec_ari.store.context import Store
from callsec_ari.webhooks.store import DeadLetters, NewDeadLetter, WebhookDeadLetterRow


def letter(n: int, call_id: str = "1733.7") -> NewDeadLetter:
    return NewDeadLetter(event_id=f"EV-{n:024x}", event_type="capture.finished",
                         call_id=call_id, url="http://127.0.0.1:9/hook",
                         body=b'{"data":{"capture_id":"CP-%d"}}' % n, attempts=3,
                         reason="http_status", http_status=500)


def test_dead_letters_round_trip_encrypted_and_leave_the_list_once_delivered(
        store: Store) -> None:
    dead = DeadLetters(store.db, store.keys)
    first, second = dead.add(letter(1)), dead.add(letter(2, call_id="1733.8"))
    assert [d.id for d in dead.list()] == [first, second]
    assert dead.list(ids=[second])[0].body == b'{"data":{"capture_id":"CP-2"}}'
    with store.db.session() as s:
        stored = s.scalars(select(WebhookDeadLetterRow.body_enc)).all()
    assert all(b"CP-" not in blob for blob in stored)
    dead.tried(first, delivered=False, reason="timeout")
    dead.tried(second, delivered=True)
    [left] = dead.list()
    assert (left.id, left.attempts, left.reason, left.http_status) == (first, 4, "timeout", None)
    assert [d.delivered_at is not None for d in dead.list(pending_only=False)] == [False, True]
