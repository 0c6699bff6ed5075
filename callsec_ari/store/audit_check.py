"""Judging a walked audit chain against its head and against exported heads (pure).

:class:`Walk` is what :meth:`~callsec_ari.store.audit.AuditLog.verify` learnt walking the
entries; :func:`head_problem` compares it with the head row (truncation, moved head, forged or
stripped MAC, a forged head recorded by an append); :func:`check_expected` with heads an
operator exported earlier (``callsec audit head``): one that is no longer in the chain means
the database was rolled back to an older copy, or the chain replaced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from callsec_ari.core.errors import CallsecError, ErrorId, InvalidInput

#: (seq, hash) of an exported head
Expected = tuple[int, str]
_EXPECT = re.compile(r"(\d{1,12}):([0-9a-f]{64})")


class AuditHeadMissing(CallsecError):
    error_id = ErrorId.AUDIT_HEAD_MISSING

    def __init__(self) -> None:
        super().__init__("the audit head row is missing")


@dataclass(frozen=True)
class AuditHead:
    """The chain's head as stored; ``state``: ``sealed``, ``unsealed`` (no MAC yet),
    ``forged`` (the MAC does not match) or ``stripped`` (the MAC was removed)."""

    seq: int
    hash: str
    base_seq: int
    base_hash: str
    state: str
    ts: datetime | None = None

    @property
    def expect(self) -> str:
        """``SEQ:HASH``, what ``audit verify --expect`` takes."""
        return f"{self.seq}:{self.hash}"

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash,
                "ts": self.ts.isoformat() if self.ts else None, "expect": self.expect,
                "base_seq": self.base_seq, "state": self.state}


@dataclass
class Walk:
    """The chain as walked: the last entry seen, the hashes of the entries asked for, the
    ``audit.head_forged`` entries (with the seq of the forged head each found) and the newest
    entry format seen (a one-item list the walker updates)."""

    last_seq: int
    hashes: dict[int, str] = field(default_factory=dict)
    forged: list[tuple[int, int]] = field(default_factory=list)
    checked: int = 0
    newest_format: list[int] = field(default_factory=lambda: [1])


Problem = tuple[int, str]


def parse_expected(text: str) -> Expected:
    """``SEQ:HASH``, or a JSON line written by ``callsec audit head --json``."""
    text = text.strip()
    if text.startswith("{"):
        try:
            text = str(json.loads(text).get("expect", ""))
        except (ValueError, AttributeError):
            text = ""
    match = _EXPECT.fullmatch(text.split()[0] if text else "")
    if match is None:
        raise InvalidInput("an exported audit head is SEQ:HASH (64 hex digits), as "
                           "`callsec audit head` prints it")
    return int(match.group(1)), match.group(2)


def read_expected_file(lines: Iterable[str]) -> list[Expected]:
    return [parse_expected(line) for line in lines if line.strip()
            and not line.lstrip().startswith("#")]


def head_problem(walk: Walk, head: AuditHead) -> Problem | None:
    if walk.last_seq < head.seq:
        return walk.last_seq + 1, (f"entry {walk.last_seq + 1} and later are missing "
                                   "(the log was truncated)")
    if walk.hashes.get(head.seq) != head.hash:
        return head.seq, (f"the head row does not match entry {head.seq}: the head was "
                          "edited (truncation?)")
    if head.state == "forged":
        return head.seq + 1, (f"the audit head's MAC does not match (head at entry "
                              f"{head.seq}): the head was moved back or forged without the "
                              f"audit key; entries after {head.seq} were probably deleted "
                              "(truncation)")
    if head.state == "stripped" or (head.state == "unsealed" and walk.newest_format[0] > 1):
        return head.seq + 1, (f"the audit head's MAC was removed (head at entry {head.seq}, "
                              "written since schema 0007): a forged head, entries after "
                              f"{head.seq} were probably deleted (truncation)")
    if walk.forged:
        marker, seq = walk.forged[0]
        return seq + 1, (f"entry {marker} records that an append found a forged audit head "
                         f"at entry {seq}: entries after {seq} were deleted (truncation)")
    return None


def check_expected(walk: Walk, expected: Iterable[Expected],
                   head: AuditHead) -> tuple[Problem | None, list[str]]:
    """The first exported head no longer in the chain, and notes on those that cannot be
    checked any more (purged by retention)."""
    notes: list[str] = []
    for seq, digest in expected:
        if seq < head.base_seq:
            notes.append(f"exported head {seq} lies before the anchor (entry "
                         f"{head.base_seq}, retention): not checked")
            continue
        if seq > walk.last_seq:
            return (walk.last_seq + 1, f"the exported head, entry {seq}, is not in the chain "
                    f"(its newest entry is {walk.last_seq}): the database was rolled back to "
                    "an older copy, or truncated"), notes
        found = head.base_hash if seq == head.base_seq else walk.hashes.get(seq)
        if found != digest:
            return (seq, f"entry {seq} differs from the exported head: the chain was "
                    "replaced or rewritten"), notes
    return None, notes
