"""``callsec audit verify|tail|head``: the audit trail from the command line (no logic).

``audit head`` prints the chain's head (``SEQ:HASH`` and the time of that entry; ``--json``
for a machine); keep the output somewhere the database's administrators cannot write, and
check it later with ``audit verify --expect SEQ:HASH`` or ``--expect-file FILE`` (one exported
head a line, either form): a head no longer in the chain means the database was rolled back
to an older copy, truncated or replaced (exit 1).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from callsec_ari.config import Settings
from callsec_ari.core.errors import InvalidInput
from callsec_ari.store.audit import AuditLog
from callsec_ari.store.audit_check import Expected, parse_expected, read_expected_file
from callsec_ari.store.context import open_store


@contextmanager
def _audit(settings: Settings) -> Iterator[AuditLog]:
    store = open_store(settings, upgrade=False)
    try:
        yield store.audit
    finally:
        store.close()


def _expected(args: argparse.Namespace) -> list[Expected]:
    expected = [parse_expected(text) for text in args.expect or []]
    for name in args.expect_file or []:
        try:
            lines = Path(name).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read {name}: {type(exc).__name__}") from None
        expected += read_expected_file(lines)
    return expected


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    try:
        expected = _expected(args)
    except InvalidInput as exc:
        print(f"callsec: {exc.message}", file=sys.stderr)
        return 2
    with _audit(settings) as audit:
        result = audit.verify(expected)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if result.ok:
        against = f", {len(expected)} exported head(s) found in the chain" if expected else ""
        print(f"audit log ok: {result.checked} entries verified{against}")
        return 0
    print(f"audit log BROKEN at entry {result.first_bad_seq}: {result.reason}", file=sys.stderr)
    return 1


def _tail(args: argparse.Namespace, settings: Settings) -> int:
    with _audit(settings) as audit:
        for entry in audit.tail(args.since, limit=args.limit):
            print(json.dumps(entry.to_json(), ensure_ascii=False))
    return 0


def _head(args: argparse.Namespace, settings: Settings) -> int:
    with _audit(settings) as audit:
        head = audit.head()
    if head.state in ("forged", "stripped"):
        print(f"audit head at entry {head.seq} fails its MAC ({head.state}): run "
              "`callsec audit verify`", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(head.to_json()))
    else:
        when = head.ts.isoformat() if head.ts else "-"
        print(f"{head.expect} {when}")
    return 0


#: The database's integers are signed 64-bit: a larger number is a usage error, not a crash.
_MAX_SEQ = 2**63 - 1


def _count(text: str) -> int:
    """A non-negative integer that fits the database (argparse: exit 2 naming the option)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value <= _MAX_SEQ:
        raise argparse.ArgumentTypeError(f"must be between 0 and {_MAX_SEQ}")
    return value


def register(sub: Any) -> None:
    """Add ``audit verify|tail|head`` to the ``callsec`` CLI."""
    parser = sub.add_parser("audit", help="the hash-chained audit trail")
    au = parser.add_subparsers(dest="audit_command", metavar="COMMAND")
    au.required = True
    p = au.add_parser("verify", help="verify the hash chain and its head; exit 1 naming the "
                      "first bad entry")
    p.add_argument("--expect", action="append", metavar="SEQ:HASH",
                   help="a head exported earlier (`audit head`) that must still be in the "
                   "chain (rollback check; repeatable)")
    p.add_argument("--expect-file", action="append", metavar="FILE",
                   help="a file of exported heads, one a line (SEQ:HASH or `audit head "
                   "--json` lines)")
    p.set_defaults(handler=_verify)
    p = au.add_parser("tail", help="print entries as JSON lines")
    p.add_argument("--since", type=_count, help="after this seq number")
    p.add_argument("--limit", type=_count, default=100)
    p.set_defaults(handler=_tail)
    p = au.add_parser("head", help="print the chain's head (SEQ:HASH and its time) to export")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(handler=_head)
