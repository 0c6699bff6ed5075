"""Append-only, hash-chained audit trail.

Each entry stores ``prev_hash`` (the previous entry's hash) and ``hash`` = HMAC-SHA256 (key
``audit-hmac.key`` from the keyring) or, without a key, SHA-256 over the canonical JSON of
``{seq, ts, actor, action, target, details, prev_hash}``. The head row (``audit_head``) holds the
newest seq/hash, so a truncated tail is caught too, and the anchor left by retention purges.

:meth:`AuditLog.verify` walks the chain and names the first entry that was edited, deleted,
inserted or reordered. Appends are serialised: SQLite takes its write lock with a first
``UPDATE`` of the head row, PostgreSQL locks the head row with ``SELECT ... FOR UPDATE``.

Details must not hold personal data: string values pass through :func:`redact_text` anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from callsec_ari.logs import redact_text
from callsec_ari.store.db import Database, Executor, rowcount
from callsec_ari.store.models import AuditHeadRow, AuditRow, Base, as_utc, utcnow

GENESIS = "0" * 64
LOG = Base.metadata.tables["audit_log"]
HEAD = Base.metadata.tables["audit_head"]
_TOUCH_HEAD = update(HEAD).where(HEAD.c.id == 1).values(seq=HEAD.c.seq)
_READ_HEAD = select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == 1).with_for_update()
_SET_HEAD = update(HEAD).where(HEAD.c.id == 1)
_INSERT = insert(LOG)
MAX_TEXT = 200


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    ts: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts.isoformat(), "actor": self.actor,
                "action": self.action, "target": self.target, "details": self.details,
                "hash": self.hash}


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    first_bad_seq: int | None = None
    reason: str = ""
    checked: int = 0


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value[:MAX_TEXT])
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return _clean(str(value))


def canonical_details(details: Mapping[str, Any] | None) -> str:
    return json.dumps(_clean(details or {}), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


def _ts_text(ts: datetime) -> str:
    return as_utc(ts).isoformat(timespec="microseconds")


class AuditLog:
    def __init__(self, db: Database, *, hmac_key: bytes | None = None) -> None:
        self.db = db
        self._key = hmac_key

    def _digest(self, seq: int, ts: datetime, actor: str, action: str, target: str,
                details: str, prev_hash: str) -> str:
        payload = json.dumps(
            {"seq": seq, "ts": _ts_text(ts), "actor": actor, "action": action,
             "target": target, "details": details, "prev_hash": prev_hash},
            sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if self._key is not None:
            return hmac.new(self._key, payload, hashlib.sha256).hexdigest()
        return hashlib.sha256(payload).hexdigest()

    def _lock_head(self, s: Executor) -> tuple[int, str]:
        """Lock the head row for this transaction; returns the newest (seq, hash)."""
        if self.db.dialect == "sqlite":  # a write first: takes SQLite's database write lock
            s.execute(_TOUCH_HEAD)
        row = s.execute(_READ_HEAD).one()
        return int(row.seq), str(row.hash)

    def append(self, actor: str, action: str, target: str = "",
               details: Mapping[str, Any] | None = None, *,
               session: Executor | None = None) -> AuditEntry:
        """Append one entry; with ``session`` (a Session or Connection) it commits (or
        rolls back) with that work."""
        if session is None:
            with self.db.connect() as conn:
                return self._append(conn, actor, action, target, details)
        return self._append(session, actor, action, target, details)

    def _append(self, s: Executor, actor: str, action: str, target: str,
                details: Mapping[str, Any] | None) -> AuditEntry:
        last_seq, prev = self._lock_head(s)
        seq, ts, text = last_seq + 1, utcnow(), canonical_details(details)
        actor, action, target = actor[:128], action[:64], target[:128]
        digest = self._digest(seq, ts, actor, action, target, text, prev)
        s.execute(_INSERT, [{"seq": seq, "ts": ts, "actor": actor, "action": action,
                                 "target": target, "details": text, "prev_hash": prev,
                                 "hash": digest}])
        s.execute(_SET_HEAD, {"seq": seq, "hash": digest})
        return AuditEntry(seq, ts, actor, action, target, json.loads(text), prev, digest)

    def verify(self) -> VerifyResult:
        """Walk the chain; the first edited, deleted, inserted or reordered entry is named."""
        with self.db.session() as s:
            head = s.get(AuditHeadRow, 1)
            if head is None:
                return VerifyResult(False, 0, "the audit head row is missing")
            expected, prev, checked = head.base_seq + 1, head.base_hash, 0
            rows = s.scalars(select(AuditRow).order_by(AuditRow.seq).execution_options(
                yield_per=2000))
            for row in rows:
                bad = self._check_row(row, expected, prev)
                if bad is not None:
                    return VerifyResult(False, bad[0], bad[1], checked)
                prev, expected, checked = row.hash, expected + 1, checked + 1
            if expected - 1 != head.seq or prev != head.hash:
                return VerifyResult(False, expected, f"entry {expected} and later are missing "
                                    "(the log was truncated)", checked)
        return VerifyResult(True, None, "", checked)

    def _check_row(self, row: AuditRow, expected: int, prev: str) -> tuple[int, str] | None:
        if row.seq < expected:
            return row.seq, f"entry {row.seq} lies before the chain's anchor (inserted)"
        if row.seq > expected:
            return expected, f"entry {expected} is missing (deleted)"
        if row.prev_hash != prev:
            return row.seq, f"entry {row.seq} does not link to entry {row.seq - 1} " \
                            "(inserted or replaced)"
        digest = self._digest(row.seq, row.ts, row.actor, row.action, row.target,
                              row.details, row.prev_hash)
        if not hmac.compare_digest(digest, row.hash):
            return row.seq, f"entry {row.seq} does not match its hash (edited)"
        return None

    def tail(self, since: datetime | int | None = None, *, limit: int = 1000) -> list[AuditEntry]:
        """Entries after ``since`` (a seq number or a timestamp), oldest first."""
        query = select(AuditRow).order_by(AuditRow.seq).limit(limit)
        if isinstance(since, int):
            query = query.where(AuditRow.seq > since)
        elif isinstance(since, datetime):
            query = query.where(AuditRow.ts > as_utc(since))
        with self.db.session() as s:
            return [AuditEntry(r.seq, as_utc(r.ts), r.actor, r.action, r.target,
                               json.loads(r.details), r.prev_hash, r.hash)
                    for r in s.scalars(query)]

    def for_target(self, target: str, *, session: Session) -> list[AuditEntry]:
        rows = session.scalars(select(AuditRow).where(AuditRow.target == target)
                               .order_by(AuditRow.seq))
        return [AuditEntry(r.seq, as_utc(r.ts), r.actor, r.action, r.target,
                           json.loads(r.details), r.prev_hash, r.hash) for r in rows]

    def purge_before(self, cutoff: datetime, *, session: Executor) -> int:
        """Retention: drop the oldest entries older than ``cutoff``; the last dropped entry
        becomes the anchor the chain is verified from."""
        self._lock_head(session)
        last = session.execute(select(func.max(LOG.c.seq)).where(LOG.c.ts < cutoff)).scalar()
        if last is None:
            return 0
        anchor = session.execute(select(LOG.c.hash).where(LOG.c.seq == last)).scalar_one()
        count = rowcount(session.execute(delete(LOG).where(LOG.c.seq <= last)))
        session.execute(update(HEAD).where(HEAD.c.id == 1)
                        .values(base_seq=last, base_hash=anchor))
        return count
