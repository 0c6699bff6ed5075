"""The nodes' shared event bus: masked live events over PostgreSQL ``LISTEN/NOTIFY``.

Every event this node publishes on its :class:`~callsec_ari.runtime.bus.EventBus` is sent as
``NOTIFY callsec_events`` with a JSON payload ``{"node", "call_id", "topic", "ts", "payload"}``;
every event another node sent is published on this node's bus (``origin`` set, so it is not
sent on again and not counted in this node's metrics). A desk connected to any node so sees
the progress of a call that another node runs.

The payload goes through :func:`~callsec_ari.runtime.bus.safe_payload` before it leaves the
process: scalars only, digit runs in text blanked, digit tails only under their own keys (the
last 4 of a card). PostgreSQL only (SQLite runs one node); a lost connection is re-opened.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import psycopg
from sqlalchemy.engine import URL

from callsec_ari.runtime.bus import BusEvent, EventBus, safe_payload

log = logging.getLogger(__name__)
CHANNEL = "callsec_events"
#: PostgreSQL refuses a NOTIFY payload of 8000 bytes or more.
MAX_PAYLOAD = 7900
_NO_CALL = {"call_id": "-"}


def conninfo(url: URL) -> str:
    """A libpq URI from the SQLAlchemy URL (``postgresql+psycopg://...``)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def notify_payload(node_id: str, event: BusEvent) -> str | None:
    """The NOTIFY payload of ``event`` (masked); None when it would be too long."""
    text = json.dumps({"node": node_id, "call_id": event.call_id, "topic": event.topic,
                       "ts": event.ts, "payload": safe_payload(event.payload)},
                      separators=(",", ":"))
    return text if len(text.encode()) < MAX_PAYLOAD else None


def parse_payload(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or not all(
            isinstance(data.get(k), str) for k in ("node", "call_id", "topic")) \
            or not isinstance(data.get("payload"), dict):
        return None
    return data


class PgBus:
    """Sends this node's bus events to the others and publishes theirs here."""

    def __init__(self, url: URL, node_id: str, bus: EventBus, *,
                 retry_seconds: float = 1.0) -> None:
        self._conninfo = conninfo(url)
        self.node_id = node_id
        self.bus = bus
        self.retry_seconds = retry_seconds
        self.sent = 0
        self.received = 0
        self.listening = asyncio.Event()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._send_loop(), name="pgbus-send")
            tg.create_task(self._listen_loop(), name="pgbus-listen")

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True,
                                                     connect_timeout=5)

    async def _send_loop(self) -> None:
        with self.bus.subscribe() as queue:
            while True:
                try:
                    async with await self._connect() as conn:
                        while True:
                            event = await queue.get()
                            if event.origin or not event.call_id:
                                continue  # another node's (already sent), or a control event
                            payload = notify_payload(self.node_id, event)
                            if payload is None:
                                log.warning("event %s too long for NOTIFY; not sent",
                                            event.topic, extra={"call_id": event.call_id})
                                continue
                            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                            self.sent += 1
                except psycopg.Error as exc:
                    log.warning("event bus (send) lost its database connection: %s",
                                type(exc).__name__, extra=_NO_CALL)
                    await asyncio.sleep(self.retry_seconds)

    async def _listen_loop(self) -> None:
        while True:
            try:
                async with await self._connect() as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    async for notify in conn.notifies():
                        self._received(notify.payload)
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("event bus (listen) lost its database connection: %s",
                            type(exc).__name__, extra=_NO_CALL)
                await asyncio.sleep(self.retry_seconds)

    def _received(self, text: str) -> None:
        data = parse_payload(text)
        if data is None:
            log.warning("ignored a malformed event bus payload", extra=_NO_CALL)
            return
        if data["node"] == self.node_id:
            return  # our own, already on our bus
        self.received += 1
        self.bus.publish(data["call_id"], data["topic"], safe_payload(data["payload"]),
                         origin=data["node"])
