"""``callsec webhooks list|retry``: the dead letters from the command line.

``retry`` re-sends pending dead letters (``--id ID``, repeatable, or ``--all``) in the order
they were written, with their original event id and body, signed afresh with the secret the
configuration now gives their URL. A letter whose call has an earlier letter still failing
is not sent (a receiver never sees a call's events out of order). Exit 0 when every chosen
letter was delivered, 1 when some are still pending, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import aiohttp

from callsec_ari.config import Settings
from callsec_ari.store.context import open_store
from callsec_ari.verification.delivery.base import DeliveryFailed
from callsec_ari.webhooks.config import policy_from, targets_from
from callsec_ari.webhooks.sender import Outgoing, Target, deliver
from callsec_ari.webhooks.store import DeadLetter, DeadLetters


def _list(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings, upgrade=False)
    try:
        letters = DeadLetters(store.db, store.keys).list(pending_only=not args.all,
                                                         limit=args.limit)
    finally:
        store.close()
    for letter in letters:
        if args.json:
            print(json.dumps(letter.to_json()))
        else:
            state = "delivered" if letter.delivered_at else "pending"
            print(f"{letter.id}\t{state}\t{letter.event_type}\t{letter.event_id}\t"
                  f"{letter.call_id}\t{letter.reason}\t{letter.attempts}\t{letter.url}")
    return 0


async def _resend(letters: list[DeadLetter], dead: DeadLetters,
                  targets: dict[str, Target], settings: Settings) -> int:
    policy = policy_from(settings.webhooks)
    failed_calls: set[tuple[str, str]] = set()
    pending = 0
    async with aiohttp.ClientSession() as session:
        for letter in letters:
            target = targets.get(letter.url)
            key = (letter.url, letter.call_id)
            if target is None or key in failed_calls or not letter.body:
                why = "its URL is no longer in [webhooks] urls" if target is None else \
                    "its call's data was erased" if not letter.body else \
                    "an earlier event of its call is still pending"
                print(f"{letter.id}: not sent, {why}", file=sys.stderr)
                failed_calls.add(key)
                pending += 1
                continue
            item = Outgoing(event_id=letter.event_id, event_type=letter.event_type,
                            call_id=letter.call_id, body=letter.body)
            try:
                await deliver(session, target, item, policy)
            except DeliveryFailed as exc:
                await asyncio.to_thread(dead.tried, letter.id, delivered=False,
                                        reason=exc.reason, http_status=exc.http_status)
                print(f"{letter.id}: failed again ({exc.reason})", file=sys.stderr)
                failed_calls.add(key)
                pending += 1
                continue
            await asyncio.to_thread(dead.tried, letter.id, delivered=True)
            print(f"{letter.id}: delivered ({letter.event_type} {letter.event_id})")
    return pending


def _retry(args: argparse.Namespace, settings: Settings) -> int:
    if not args.all and not args.id:
        print("callsec: webhooks retry needs --id ID or --all", file=sys.stderr)
        return 2
    store = open_store(settings, upgrade=False)
    try:
        dead = DeadLetters(store.db, store.keys)
        letters = dead.list(ids=args.id or ())
        if args.id and {letter.id for letter in letters} != set(args.id):
            missing = sorted(set(args.id) - {letter.id for letter in letters})
            print(f"callsec: no pending dead letter {', '.join(map(str, missing))}",
                  file=sys.stderr)
            return 2
        targets = {t.url: t for t in targets_from(settings.webhooks)}
        pending = asyncio.run(_resend(letters, dead, targets, settings))
        if letters:
            store.audit.append("cli", "webhook.retry", "dead-letters", {
                "letters": len(letters), "still_pending": pending})
    finally:
        store.close()
    print(f"{len(letters) - pending} delivered, {pending} pending")
    return 1 if pending else 0


def register(sub: Any) -> None:
    """Add ``webhooks list|retry`` to the ``callsec`` CLI."""
    parser = sub.add_parser("webhooks", help="webhook dead letters: list and re-send")
    wh = parser.add_subparsers(dest="webhooks_command", metavar="COMMAND")
    wh.required = True
    p = wh.add_parser("list", help="pending dead letters (tab-separated, or --json lines)")
    p.add_argument("--all", action="store_true", help="delivered ones too")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    p.add_argument("--limit", type=int, default=1000)
    p.set_defaults(handler=_list)
    p = wh.add_parser("retry", help="re-send dead letters (in order; exit 1 if some fail)")
    p.add_argument("--id", type=int, action="append", metavar="ID",
                   help="a dead letter's id (`webhooks list`; repeatable)")
    p.add_argument("--all", action="store_true", help="every pending dead letter")
    p.set_defaults(handler=_retry)
