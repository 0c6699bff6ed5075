"""In-process publish/subscribe for masked progress events (agent desk SSE, metrics).

Subscribers get a bounded queue; a slow subscriber loses its oldest events rather than holding
up a call (the desk re-reads state on reconnect). Payloads are masked by construction: flows
publish counts, brands, last-4 and outcomes, never digits.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from callsec_ari.core.commands import Publish
from callsec_ari.core.events import Event
from callsec_ari.core.ports import CallHandle
from callsec_ari.logs import redact_text


@dataclass(frozen=True, kw_only=True)
class BusEvent:
    seq: int
    call_id: str
    topic: str
    payload: dict[str, Any]
    ts: float = field(default_factory=time.time)
    #: The node that published it, when another node did (``runtime/pgbus.py``).
    origin: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "call_id": self.call_id, "topic": self.topic,
                "ts": self.ts, **self.payload}


class EventBus:
    def __init__(self, queue_size: int = 256) -> None:
        self._subscribers: set[asyncio.Queue[BusEvent]] = set()
        self._seq = itertools.count(1)
        self._queue_size = queue_size
        #: (topic, stage/result) -> count, for /metrics.
        self.counters: Counter[tuple[str, str]] = Counter()

    def publish(self, call_id: str, topic: str, payload: dict[str, Any], *,
                origin: str = "") -> BusEvent:
        event = BusEvent(seq=next(self._seq), call_id=call_id, topic=topic, payload=payload,
                         origin=origin)
        if not origin:  # another node's events count in its own metrics
            label = str(payload.get("result") or payload.get("stage") or "")
            self.counters[(topic, label)] += 1
        for queue in list(self._subscribers):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)
        return event

    @contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[BusEvent]]:
        queue: asyncio.Queue[BusEvent] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def handle(self, call: CallHandle, command: Publish) -> Sequence[Event]:
        """The executor's handler for :class:`Publish` commands."""
        payload = dict(command.payload)
        if command.topic == "call" and "stage" in payload:
            call.context.stage = str(payload["stage"])
        self.publish(call.call_id, command.topic, payload)
        return ()


#: Payload keys whose values are short digit tails by design (last 4 of a card).
TAIL_KEYS = frozenset({"last_digits", "last4"})


def safe_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """What may leave the process (desk streams, other nodes): scalars only, digit runs in
    free text blanked, digit tails only where expected."""
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if isinstance(value, str):
            if key in TAIL_KEYS:
                if len(value) <= 4 and value.isdigit():
                    out[key] = value
                continue
            out[key] = redact_text(value[:200])
        elif isinstance(value, bool | int | float) or value is None:
            out[key] = value
    return out
