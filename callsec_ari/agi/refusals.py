"""Logging and auditing refused FastAGI connections and sessions, bounded under a flood.

Every refusal is counted; the first :attr:`RefusalAudit.rows_per_key` of each (action, peer)
per window are logged and audited one by one, the rest only counted and written as one summary
row (``"repeated": n``) when the window ends. At most :attr:`RefusalAudit.max_peers` peers get
rows of their own per window (the loopback network alone has 16 million source addresses); the
others are summed into one row with target ``other-peers``. So a flood costs at most
``max_peers * (rows_per_key + 1) + 1`` rows per action and window, and constant memory.

Audit rows are written by :meth:`RefusalAudit.run` (a task of the composition root) in a worker
thread, never on the event loop. Details hold the reason, the peer address and the flow name:
no caller ID, channel name or digits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

PEER_REFUSED = "agi.peer_refused"
SESSION_REFUSED = "agi.session_refused"
OTHER_PEERS = "other-peers"



class AuditTrail(Protocol):
    """The audit log (:class:`callsec_ari.store.audit.AuditLog`): one blocking append."""

    def append(self, actor: str, action: str, target: str = ...,
               details: Mapping[str, Any] | None = ...) -> object: ...


@dataclass
class _Window:
    started: float
    #: (action, peer) -> refusals in this window
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    #: action -> refusals from peers beyond max_peers
    overflow: dict[str, int] = field(default_factory=dict)


class RefusalAudit:
    def __init__(self, audit: AuditTrail, *, window: float = 60.0, rows_per_key: int = 5,
                 max_peers: int = 32, clock: Callable[[], float] = time.monotonic) -> None:
        self.audit = audit
        self.window = window
        self.rows_per_key = rows_per_key
        self.max_peers = max_peers
        self.clock = clock
        self._current = _Window(clock())
        self._rows: list[tuple[str, str, dict[str, Any]]] = []
        self._wake = asyncio.Event()

    # -- what the server and the port report (on the event loop; never blocks) ----------------
    def peer_refused(self, peer: str) -> None:
        if self._admit(PEER_REFUSED, peer):
            log.warning("FastAGI connection from %s refused: not in [agi] allowed_peers", peer,
                        extra={"call_id": "-"})
            self._queue(PEER_REFUSED, peer, {"peer": peer})

    def session_refused(self, peer: str, call_id: str, reason: str, flow: str) -> None:
        if self._admit(SESSION_REFUSED, peer):
            log.warning("FastAGI session from %s refused: %s (flow %s); closed, nothing run",
                        peer, reason, flow, extra={"call_id": call_id})
            self._queue(SESSION_REFUSED, call_id,
                        {"peer": peer, "reason": reason, "flow": flow})

    def _admit(self, action: str, peer: str) -> bool:
        """Count one refusal; ``True`` when it gets a log line and an audit row of its own."""
        self._roll()
        window = self._current
        key = (action, peer)
        if key not in window.counts and len(window.counts) >= self.max_peers:
            window.overflow[action] = window.overflow.get(action, 0) + 1
            return False
        window.counts[key] = window.counts.get(key, 0) + 1
        return window.counts[key] <= self.rows_per_key

    def _queue(self, action: str, target: str, details: dict[str, Any]) -> None:
        self._rows.append((action, target, details))
        self._wake.set()

    # -- windows ---------------------------------------------------------------------------------
    def _roll(self, *, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._current.started < self.window:
            return
        ended, self._current = self._current, _Window(now)
        seconds = round(self.window)
        for (action, peer), total in ended.counts.items():
            if total > self.rows_per_key:
                repeated = total - self.rows_per_key
                log.warning("%d more %s from %s in the last %d s", repeated, action, peer,
                            seconds, extra={"call_id": "-"})
                self._queue(action, peer, {"peer": peer, "repeated": repeated,
                                           "window_seconds": seconds})
        for action, total in ended.overflow.items():
            log.warning("%d more %s from other peers in the last %d s", total, action, seconds,
                        extra={"call_id": "-"})
            self._queue(action, OTHER_PEERS, {"repeated": total, "window_seconds": seconds})

    async def run(self) -> None:
        """Write queued rows as they come and the summaries when each window ends."""
        try:
            while True:
                remaining = self._current.started + self.window - self.clock()
                try:
                    async with asyncio.timeout(max(remaining, 0.0)):
                        await self._wake.wait()
                except TimeoutError:
                    self._roll()
                self._wake.clear()
                await self._flush()
        finally:
            self._roll(force=True)
            if self._rows:
                self._write_all(self._take())  # stopping: the summaries still go in

    @property
    def pending(self) -> int:
        """Audit rows queued and not yet written (``callsec status``)."""
        return len(self._rows)

    def _take(self) -> list[tuple[str, str, dict[str, Any]]]:
        rows, self._rows = self._rows, []
        return rows

    async def _flush(self) -> None:
        rows = self._take()
        if rows:
            await asyncio.to_thread(self._write_all, rows)

    def _write_all(self, rows: list[tuple[str, str, dict[str, Any]]]) -> None:
        for action, target, details in rows:
            try:
                self.audit.append("system", action, target, details)
            except Exception as exc:  # the database is down: the log line above stays
                log.error("audit entry %s for %s not written: %s", action, target,
                          getattr(exc, "error_id", type(exc).__name__), extra={"call_id": "-"})
