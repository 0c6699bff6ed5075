"""Opt-in benchmark trace: how long from a DTMF event in Asterisk to callsec's next REST call.

Off by default. ``CALLSEC_BENCH_TRACE=<path>`` turns it on (``bench/run.py`` does); then the
ARI adapter appends to that file, line-buffered:

- ``d,<event ts>,<sent ts>,<command>,<read ts>``: a DTMF event whose handling sent a REST
  command; ``event ts`` is Asterisk's own ``timestamp`` of the ``ChannelDtmfReceived`` event,
  ``sent ts`` the moment the adapter issued the first REST call that event caused, ``read ts``
  the moment the adapter had read and parsed the event (all wall clock, seconds), ``command``
  that call's command kind (``StopPlayback``, ``Play``...). ``read ts`` splits the wait: before
  it, the event waited in Asterisk, the kernel or for the event loop to read the websocket;
  after it, callsec's own handling. DTMF events that cause no REST call (the middle digits of
  an entry) leave no line.
- ``n,<events>,<ts>``: every :data:`COUNT_EVERY` ARI events, the running count.

No line holds a digit, a channel id or anything else from the call: only times and counts.
"""

from __future__ import annotations

import os
import time
from typing import TextIO

from callsec_ari.core.events import Event

ENV = "CALLSEC_BENCH_TRACE"
COUNT_EVERY = 64
#: DTMF events waiting for a REST call; older ones (digits that caused none) are dropped.
MAX_PENDING = 4096


class BenchTrace:
    def __init__(self, path: str) -> None:
        self._file: TextIO = open(path, "a", buffering=1, encoding="ascii")
        self._events = 0
        #: id(event) -> (event, Asterisk timestamp, read time); the event is kept so its id
        #: stays unique.
        self._pending: dict[int, tuple[Event, float, float]] = {}

    @classmethod
    def from_env(cls) -> BenchTrace | None:
        path = os.environ.get(ENV, "")
        return cls(path) if path else None

    def event(self) -> None:
        """One ARI event arrived."""
        self._events += 1
        if self._events % COUNT_EVERY == 0:
            self._file.write(f"n,{self._events},{time.time():.6f}\n")

    def stamp(self, event: Event, asterisk_ts: float) -> None:
        """``event`` (a core DTMF event) was made from an ARI event stamped ``asterisk_ts``."""
        if len(self._pending) >= MAX_PENDING:
            del self._pending[next(iter(self._pending))]
        self._pending[id(event)] = (event, asterisk_ts, time.time())

    def sent(self, trigger: Event | None, kind: str) -> None:
        """A REST command of ``kind`` is leaving while the call handles ``trigger``."""
        if trigger is None:
            return
        found = self._pending.pop(id(trigger), None)
        if found is not None and found[0] is trigger:
            self._file.write(f"d,{found[1]:.6f},{time.time():.6f},{kind},{found[2]:.6f}\n")

    def close(self) -> None:
        self._file.write(f"n,{self._events},{time.time():.6f}\n")
        self._file.close()
