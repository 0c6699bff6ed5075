"""Append-only, hash-chained audit trail with an authenticated head.

Each entry stores ``prev_hash`` (the previous entry's hash) and ``hash`` = HMAC-SHA256 (key
``audit-hmac.key`` from the keyring) or, without a key, SHA-256 over the canonical JSON of
``{seq, ts, actor, action, target, details, prev_hash}``. The head row (``audit_head``) holds the
newest seq/hash and the anchor left by retention purges (``base_*``); its ``mac`` (HMAC under
the same key over head and anchor) makes a head moved back to a surviving entry -- the newest
entries deleted -- or a moved anchor fail :meth:`AuditLog.verify`.

A head row restored together with its entries from an older copy of the database is
consistent in itself: an operator exports the head (``callsec audit head``, and ``callsec
run`` logs it every ``[logging] audit_head_minutes``) and checks later that the exported
entry is still in the chain (``callsec audit verify --expect SEQ:HASH``).

Entries written since schema 0007 bind the format version (``"v": 2``) into their hash. A
database upgraded to 0007 has no head MAC yet ("unsealed"): the first append, ``audit verify``
or ``audit head`` seals it. A missing MAC on a head whose entry is in the new format was
stripped: verify fails. An append that finds a forged or stripped head does not launder it:
it records an ``audit.head_forged`` entry first, and verify fails on that entry from then on.

:meth:`AuditLog.verify` walks the chain and names the first entry that was edited, deleted,
inserted or reordered. Appends are serialised and update the head (and its MAC) in the same
transaction: SQLite takes its write lock with a first ``UPDATE`` of the head row, PostgreSQL
locks the head row with ``SELECT ... FOR UPDATE`` -- so several callsec nodes on one database
keep one chain. A node's concurrent appends go in as a group (:class:`~.group.GroupCommit`):
one transaction, one head lock for all of them, so calls do not queue on the head one by one.

Details must not hold personal data: string values pass through :func:`redact_text` anyway.
Targets must be identifiers of their action's kind (:mod:`.audit_targets`); one that is not is
stored as a keyed marker.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from callsec_ari.logs import redact_text
from callsec_ari.store import audit_targets
from callsec_ari.store.audit_check import (
    AuditHead,
    AuditHeadMissing,
    Expected,
    Walk,
    check_expected,
    head_problem,
)
from callsec_ari.store.db import Database, Executor, rowcount
from callsec_ari.store.group import GroupCommit
from callsec_ari.store.models import AuditHeadRow, AuditRow, Base, as_utc, utcnow

log = logging.getLogger(__name__)

GENESIS = "0" * 64
HEAD_LABEL = "callsec-audit-head/1"
#: The entry format since schema 0007 (bound into the hash).
FORMAT = 2
FORGED = "audit.head_forged"
LOG = Base.metadata.tables["audit_log"]
HEAD = Base.metadata.tables["audit_head"]
_TOUCH_HEAD = update(HEAD).where(HEAD.c.id == 1).values(seq=HEAD.c.seq)
_HEAD_COLUMNS = (HEAD.c.seq, HEAD.c.hash, HEAD.c.base_seq, HEAD.c.base_hash, HEAD.c.mac)
_READ_HEAD = select(*_HEAD_COLUMNS).where(HEAD.c.id == 1).with_for_update()
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
    notes: tuple[str, ...] = ()


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


_Entry = tuple[str, str, str, Mapping[str, Any] | None]  # actor, action, target, details


class _Head(NamedTuple):
    seq: int
    hash: str
    base_seq: int
    base_hash: str


class AuditLog:
    def __init__(self, db: Database, *, hmac_key: bytes | None = None) -> None:
        self.db = db
        self._key = hmac_key
        self._group: GroupCommit[_Entry, AuditEntry] = GroupCommit(self._append_group)

    def _mac(self, payload: dict[str, Any]) -> str:
        data = json.dumps(payload, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")
        if self._key is not None:
            return hmac.new(self._key, data, hashlib.sha256).hexdigest()
        return hashlib.sha256(data).hexdigest()

    def _digest(self, seq: int, ts: datetime, actor: str, action: str, target: str,
                details: str, prev_hash: str, *, version: int = FORMAT) -> str:
        """An entry's hash; ``version`` 2 (schema 0007 on) is bound into it, so an entry
        written since the head is authenticated cannot pass for an older one."""
        payload = {"seq": seq, "ts": _ts_text(ts), "actor": actor, "action": action,
                   "target": target, "details": details, "prev_hash": prev_hash}
        if version >= FORMAT:
            payload["v"] = version
        return self._mac(payload)

    def _row_version(self, row: AuditRow) -> int | None:
        """2 or 1 (before schema 0007), None when the row matches neither (edited)."""
        for version in (FORMAT, 1):
            digest = self._digest(row.seq, row.ts, row.actor, row.action, row.target,
                                  row.details, row.prev_hash, version=version)
            if hmac.compare_digest(digest, row.hash):
                return version
        return None

    def _head_mac(self, head: _Head) -> str:
        """Authenticates head and anchor together: neither can be moved without the key."""
        return self._mac({"chain": HEAD_LABEL, "seq": head.seq, "hash": head.hash,
                          "base_seq": head.base_seq, "base_hash": head.base_hash})

    def _state(self, s: Executor, head: _Head, mac: str | None) -> str:
        """``sealed``; ``forged`` (wrong MAC); ``stripped`` (no MAC, but the newest entry was
        written since schema 0007); ``unsealed`` (no MAC yet: fresh or just upgraded)."""
        if mac is not None:
            return "sealed" if hmac.compare_digest(self._head_mac(head), mac) else "forged"
        if head.seq == head.base_seq:
            return "unsealed"
        row = s.execute(select(LOG).where(LOG.c.seq == head.seq)).first()
        if row is None or self._row_version(cast(AuditRow, row)) != 1:
            return "stripped"
        return "unsealed"

    def _lock_head(self, s: Executor) -> tuple[_Head, str]:
        """Lock the head row for this transaction; returns it and its MAC state."""
        if self.db.dialect == "sqlite":  # a write first: takes SQLite's database write lock
            s.execute(_TOUCH_HEAD)
        row = s.execute(_READ_HEAD).one()
        head = _Head(int(row.seq), str(row.hash), int(row.base_seq), str(row.base_hash))
        return head, self._state(s, head, row.mac)

    def _open_head(self, s: Executor) -> _Head:
        """The locked head, sealed. A forged or stripped head is not laundered by the next
        append: an ``audit.head_forged`` entry records it first."""
        head, state = self._lock_head(s)
        if state == "unsealed":
            s.execute(_SET_HEAD, {"seq": head.seq, "hash": head.hash,
                                  "mac": self._head_mac(head)})
        if state in ("sealed", "unsealed"):
            return head
        log.error("audit head at entry %s fails its MAC (%s): recording it", head.seq, state)
        entry = self._write(s, head, "system", FORGED, "audit_head",
                            canonical_details({"seq": head.seq, "state": state}))
        return head._replace(seq=entry.seq, hash=entry.hash)

    def _write(self, s: Executor, head: _Head, actor: str, action: str, target: str,
               text: str) -> AuditEntry:
        seq, ts, prev = head.seq + 1, utcnow(), head.hash
        digest = self._digest(seq, ts, actor, action, target, text, prev)
        s.execute(_INSERT, [{"seq": seq, "ts": ts, "actor": actor, "action": action,
                             "target": target, "details": text, "prev_hash": prev,
                             "hash": digest}])
        mac = self._head_mac(head._replace(seq=seq, hash=digest))
        s.execute(_SET_HEAD, {"seq": seq, "hash": digest, "mac": mac})
        return AuditEntry(seq, ts, actor, action, target, json.loads(text), prev, digest)

    def append(self, actor: str, action: str, target: str = "",
               details: Mapping[str, Any] | None = None, *,
               session: Executor | None = None) -> AuditEntry:
        """Append one entry; with ``session`` (a Session or Connection) it commits (or
        rolls back) with that work. A target that is not an identifier of its action's kind
        is stored as a keyed marker. Without ``session``, the entries of concurrent callers
        (threads) go in together: one transaction locks the head once for the group."""
        if session is None:
            return self._group.submit((actor, action, target, details))
        return self._append(session, actor, action, target, details)

    def _append_group(self, group: list[_Entry]) -> list[AuditEntry]:
        with self.db.connect() as conn:
            return [self._append(conn, *entry) for entry in group]

    def _append(self, s: Executor, actor: str, action: str, target: str,
                details: Mapping[str, Any] | None) -> AuditEntry:
        text = canonical_details(details)
        target = audit_targets.safe_target(action[:64], target, self._key)
        head = self._open_head(s)
        return self._write(s, head, actor[:128], action[:64], target[:128], text)

    def seal(self) -> None:
        """Give an unsealed head its MAC now (``audit verify`` / ``audit head``)."""
        with self.db.connect() as conn:
            head, state = self._lock_head(conn)
            if state == "unsealed":
                conn.execute(_SET_HEAD, {"seq": head.seq, "hash": head.hash,
                                         "mac": self._head_mac(head)})

    def _read_head(self, s: Session) -> AuditHead | None:
        row = s.get(AuditHeadRow, 1)
        if row is None:
            return None
        head = _Head(row.seq, row.hash, row.base_seq, row.base_hash)
        ts = s.scalar(select(AuditRow.ts).where(AuditRow.seq == row.seq))
        return AuditHead(row.seq, row.hash, row.base_seq, row.base_hash,
                         self._state(s, head, row.mac), as_utc(ts) if ts else None)

    def head(self) -> AuditHead:
        """The head to export (sealed first if it was not yet)."""
        with self.db.session() as s:
            head = self._read_head(s)
        if head is None:
            raise AuditHeadMissing()
        if head.state == "unsealed":
            self.seal()
        return head

    def verify(self, expected: Iterable[Expected] = ()) -> VerifyResult:
        """Walk the chain; the first edited, deleted, inserted or reordered entry is named,
        a truncated tail (even with the head moved back), and an exported head (``expected``)
        that is no longer in the chain (a rollback to an older copy)."""
        expected = list(expected)
        with self.db.session() as s:
            head = self._read_head(s)
            if head is None:
                return VerifyResult(False, 0, "the audit head row is missing")
            walked = self._walk(s, head, {head.seq, *(seq for seq, _ in expected)})
        if isinstance(walked, VerifyResult):
            return walked
        notes: list[str] = []
        problem = head_problem(walked, head)
        if problem is None:
            problem, notes = check_expected(walked, expected, head)
        if problem is not None:
            return VerifyResult(False, problem[0], problem[1], walked.checked)
        if head.state == "unsealed" and head.seq != head.base_seq:
            self.seal()
            notes.append("the head had no MAC yet (first verify after the upgrade to schema "
                         "0007): sealed now")
        return VerifyResult(True, None, "", walked.checked, tuple(notes))

    def _walk(self, s: Session, head: AuditHead, wanted: set[int]) -> Walk | VerifyResult:
        walk = Walk(head.base_seq, {head.base_seq: head.base_hash})
        prev = head.base_hash
        rows = s.scalars(select(AuditRow).order_by(AuditRow.seq).execution_options(
            yield_per=2000))
        for row in rows:
            bad = self._check_row(row, walk.last_seq + 1, prev, walk.newest_format)
            if bad is not None:
                return VerifyResult(False, bad[0], bad[1], walk.checked)
            if row.seq in wanted:
                walk.hashes[row.seq] = row.hash
            if row.action == FORGED:
                walk.forged.append((row.seq, int(json.loads(row.details).get("seq", 0))))
            prev, walk.last_seq, walk.checked = row.hash, row.seq, walk.checked + 1
        return walk

    def _check_row(self, row: AuditRow, expected: int, prev: str,
                   newest: list[int]) -> tuple[int, str] | None:
        if row.seq < expected:
            return row.seq, f"entry {row.seq} lies before the chain's anchor (inserted)"
        if row.seq > expected:
            return expected, f"entry {expected} is missing (deleted)"
        if row.prev_hash != prev:
            return row.seq, f"entry {row.seq} does not link to entry {row.seq - 1} " \
                            "(inserted or replaced)"
        version = self._row_version(row)
        if version is None:
            return row.seq, f"entry {row.seq} does not match its hash (edited)"
        if version < newest[0]:
            return row.seq, f"entry {row.seq} is in the format before schema 0007 but " \
                            "follows newer entries (inserted or replaced)"
        newest[0] = version
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
        becomes the anchor the chain is verified from (authenticated with the head)."""
        head = self._open_head(session)
        last = session.execute(select(func.max(LOG.c.seq)).where(LOG.c.ts < cutoff)).scalar()
        if last is None:
            return 0
        anchor = session.execute(select(LOG.c.hash).where(LOG.c.seq == last)).scalar_one()
        count = rowcount(session.execute(delete(LOG).where(LOG.c.seq <= last)))
        moved = head._replace(base_seq=last, base_hash=anchor)
        session.execute(update(HEAD).where(HEAD.c.id == 1)
                        .values(base_seq=last, base_hash=anchor, mac=self._head_mac(moved)))
        return count
