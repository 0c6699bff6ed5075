"""Verification results the database could not take when their call finished, written later.

A caller verified while the database was down is still verified (the code check needs no
database), but its record and audit entry could not be written, and the attempt opened at its
look-up stayed open. :class:`LateRecords` keeps such writes in memory and tries them again every
few seconds until the database takes them; each keeps the time its call really finished. A
write that fails for another reason than an unavailable database is not retried (logged). What
is still pending when callsec stops is logged by call id: those results are lost with the
process, and the next look-up of such a call closes its attempt as ``error``/``interrupted``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

from callsec_ari.core.errors import CallsecError, Unavailable
from callsec_ari.logs import Figure

log = logging.getLogger(__name__)
#: Seconds between two attempts at the pending writes.
RETRY_SECONDS = 5.0
#: Pending writes kept at most; beyond it the oldest is dropped (logged).
LIMIT = 10_000

Write = Callable[[], None]


class LateRecords:
    """Writes (blocking callables, one per call id) waiting for the database."""

    def __init__(self, *, retry_seconds: float = RETRY_SECONDS, limit: int = LIMIT) -> None:
        self.retry_seconds = retry_seconds
        self.limit = limit
        #: number -> (call id, write), oldest first; the worker thread and the event loop
        #: both change it, under ``_lock``
        self._pending: OrderedDict[int, tuple[str, Write]] = OrderedDict()
        self._numbers = itertools.count()
        self._lock = threading.Lock()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, call_id: str, write: Write) -> None:
        with self._lock:
            self._pending[next(self._numbers)] = (call_id, write)
            over = [self._pending.popitem(last=False)[1][0]
                    for _ in range(len(self._pending) - self.limit)]
        for oldest in over:
            self.dropped += 1
            log.error("verification result dropped unwritten: more than %s wait for the "
                      "database", Figure(self.limit), extra={"call_id": oldest})

    def attempt_all(self) -> int:
        """One pass over the pending writes, oldest first (blocking: run it in a worker
        thread). Stops at the first unavailable database; returns how many were written."""
        written = 0
        with self._lock:
            pending = list(self._pending.items())
        for number, (call_id, write) in pending:
            try:
                write()
            except Unavailable:
                break
            except CallsecError as exc:
                self._forget(number)
                self.dropped += 1
                log.error("verification result could not be recorded late: %s", exc.error_id,
                          extra={"call_id": call_id})
                continue
            self._forget(number)
            written += 1
            log.info("verification result recorded late (the database is back)",
                     extra={"call_id": call_id})
        return written

    def _forget(self, number: int) -> None:
        with self._lock:
            self._pending.pop(number, None)

    async def run(self) -> None:
        """Retry every ``retry_seconds`` while something is pending, until cancelled."""
        try:
            while True:
                await asyncio.sleep(self.retry_seconds)
                if self._pending:
                    await asyncio.to_thread(self.attempt_all)
        finally:
            for call_id, _ in self._pending.values():
                log.error("verification result never recorded: the database was unavailable "
                          "until callsec stopped", extra={"call_id": call_id})
