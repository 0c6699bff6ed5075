"""The delivery task: one bounded queue and one worker per URL, in order per call.

``emit`` (from a call's worker) signs nothing and waits for nothing: it appends the event to
each URL's queue. Each URL's worker sends its events one at a time, so a receiver sees a
call's events in the order they happened; a later event waits while an earlier one is
retried. After the last try the event becomes a dead letter; the call's later events for that
URL then go straight to the dead letters too (``callsec webhooks retry`` re-sends them in
order), so a receiver never sees an event of a call before an earlier one. A full queue
writes the event to the dead letters at once (logged and audited); so does stopping callsec
with events still queued.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

import aiohttp

from callsec_ari.config import Settings
from callsec_ari.store.audit import AuditLog
from callsec_ari.store.errors import DatabaseUnavailable
from callsec_ari.verification.delivery.base import DeliveryFailed
from callsec_ari.verification.delivery.retry import RetryPolicy
from callsec_ari.webhooks.config import policy_from, targets_from
from callsec_ari.webhooks.sender import Outgoing, Target, deliver
from callsec_ari.webhooks.signing import event_body, new_event_id
from callsec_ari.webhooks.store import DeadLetters, NewDeadLetter

log = logging.getLogger(__name__)
#: Calls per URL remembered as having a dead letter (their later events follow it).
BROKEN_CALLS = 4096


class _Lane:
    """One URL: its queue, and the calls whose earlier event is a dead letter."""

    def __init__(self, target: Target, queue_size: int) -> None:
        self.target = target
        self.queue: asyncio.Queue[Outgoing] = asyncio.Queue(queue_size)
        self.broken: OrderedDict[str, None] = OrderedDict()

    def mark_broken(self, call_id: str) -> None:
        self.broken[call_id] = None
        self.broken.move_to_end(call_id)
        while len(self.broken) > BROKEN_CALLS:
            self.broken.popitem(last=False)


class WebhookService:
    """The :class:`~callsec_ari.webhooks.port.WebhookNotifier` of a running callsec."""

    def __init__(self, targets: Sequence[Target], policy: RetryPolicy, dead: DeadLetters, *,
                 audit: AuditLog | None = None, queue_size: int = 1000,
                 clock: Callable[[], float] = time.time) -> None:
        self.lanes = [_Lane(t, queue_size) for t in targets]
        self.policy = policy
        self.dead = dead
        self.audit = audit
        self.clock = clock
        self._writes: set[asyncio.Task[None]] = set()
        self.delivered = 0

    @classmethod
    def from_settings(cls, settings: Settings, dead: DeadLetters,
                      audit: AuditLog | None) -> WebhookService:
        w = settings.webhooks
        return cls(targets_from(w), policy_from(w), dead, audit=audit, queue_size=w.queue_size)

    @property
    def pending(self) -> int:
        """Events waiting in the queues (``callsec status``)."""
        return sum(lane.queue.qsize() for lane in self.lanes)

    # -- the port ---------------------------------------------------------------------------
    def emit(self, event_type: str, call_id: str, payload: Mapping[str, object]) -> None:
        event_id = new_event_id()
        item = Outgoing(event_id=event_id, event_type=event_type, call_id=call_id,
                        body=event_body(event_id, event_type, call_id, payload, self.clock()))
        for lane in self.lanes:
            try:
                lane.queue.put_nowait(item)
            except asyncio.QueueFull:
                log.warning("webhook queue full: %s %s is a dead letter", event_type, event_id,
                            extra={"call_id": call_id})
                self._dead_later(lane, item, reason="queue_full", attempts=0)

    # -- the task -----------------------------------------------------------------------------
    async def run(self, session: aiohttp.ClientSession) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                for lane in self.lanes:
                    tg.create_task(self._work(session, lane), name="webhook-lane")
        finally:
            self._shutdown()

    async def _work(self, session: aiohttp.ClientSession, lane: _Lane) -> None:
        while True:
            item = await lane.queue.get()
            if item.call_id in lane.broken:
                await self._dead(lane, item, reason="after_dead_letter", attempts=0)
                continue
            try:
                receipt = await deliver(session, lane.target, item, self.policy, self.clock)
            except asyncio.CancelledError:  # stopping mid-delivery: kept as a dead letter
                self._record(lane, item, "shutdown", 0)
                raise
            except DeliveryFailed as exc:
                lane.mark_broken(item.call_id)
                log.warning("webhook %s %s not delivered after %d attempt(s): %s",
                            item.event_type, item.event_id, exc.attempts, exc.reason,
                            extra={"call_id": item.call_id})
                await self._dead(lane, item, reason=exc.reason, attempts=exc.attempts,
                                 http_status=exc.http_status)
                continue
            self.delivered += 1
            log.info("webhook %s %s delivered after %d attempt(s)", item.event_type,
                     item.event_id, receipt.attempts, extra={"call_id": item.call_id})

    # -- dead letters -------------------------------------------------------------------------
    def _record(self, lane: _Lane, item: Outgoing, reason: str, attempts: int,
                http_status: int | None = None) -> None:
        letter = NewDeadLetter(event_id=item.event_id, event_type=item.event_type,
                               call_id=item.call_id, url=lane.target.url, body=item.body,
                               attempts=attempts, reason=reason, http_status=http_status)
        try:
            letter_id = self.dead.add(letter)
            if self.audit is not None:
                self.audit.append("callsec", "webhook.dead_letter", item.event_id, {
                    "letter": letter_id, "type": item.event_type, "call_id": item.call_id,
                    "reason": reason, "attempts": attempts})
        except DatabaseUnavailable as exc:
            log.error("webhook %s %s lost: the database is unavailable (%s)", item.event_type,
                      item.event_id, exc.error_id, extra={"call_id": item.call_id})

    async def _dead(self, lane: _Lane, item: Outgoing, *, reason: str, attempts: int,
                    http_status: int | None = None) -> None:
        lane.mark_broken(item.call_id)
        await asyncio.to_thread(self._record, lane, item, reason, attempts, http_status)

    def _dead_later(self, lane: _Lane, item: Outgoing, *, reason: str, attempts: int) -> None:
        """From ``emit`` (a call's worker): written by a thread, the call does not wait."""
        lane.mark_broken(item.call_id)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on the event loop (a thread): write it here
            self._record(lane, item, reason, attempts)
            return
        task = loop.create_task(asyncio.to_thread(self._record, lane, item, reason, attempts))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def _shutdown(self) -> None:
        """Stopping: what is still queued becomes dead letters (blocking, once)."""
        for lane in self.lanes:
            while not lane.queue.empty():
                item = lane.queue.get_nowait()
                self._record(lane, item, "shutdown", 0)
