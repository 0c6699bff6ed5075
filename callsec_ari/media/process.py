"""callsec's side of the media worker process (:mod:`callsec_ari.media.worker`).

:class:`MediaWorker` owns the child process: started lazily by the first relay request, served by
:meth:`MediaWorker.run` (a task in callsec's TaskGroup: reads the child's messages, restarts it
for the next request if it dies, stops it when cancelled). :class:`ProcessRelay` is the
``Relay`` the media service holds per call: same names as :class:`MediaRelay`, the sockets and
the DTMF filter live in the worker.

Why ``asyncio.create_subprocess_exec(sys.executable, "-m", ...)`` and not multiprocessing: a
fresh interpreter (nothing of callsec's threads, loop or open sockets is forked into it), asyncio
pipes on both sides without pickling, and a pipe EOF that ends the worker when callsec dies.

When the worker dies, every relay it held is lost: a pending ``open()`` raises
:class:`MediaWorkerLost`, and ``on_lost(call_id)`` tells the media service about each open relay
(the flow then ends the capture as it does when a media channel goes away).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from callsec_ari.core.errors import ErrorId, Unavailable
from callsec_ari.media import ipc
from callsec_ari.media.evidence import Evidence
from callsec_ari.media.relay import Address, BoundPorts, FilterOptions, RelayClosed

log = logging.getLogger(__name__)
_ROOT = str(Path(__file__).resolve().parents[2])  # where ``callsec_ari`` is importable from


class MediaWorkerLost(Unavailable):
    """The media worker process died or did not answer; its relays are gone."""

    error_id = ErrorId.MEDIA_WORKER_LOST


class RelayOpenFailed(Unavailable):
    """The worker could not bind the relay's sockets (``details["reason"]``: why)."""

    error_id = ErrorId.MEDIA_RELAY_OPEN_FAILED


class ProcessRelay(BoundPorts):
    """One talk-through relay held by the media worker."""

    def __init__(self, worker: MediaWorker, rid: int, *, options: FilterOptions,
                 on_digit: Callable[[str, float], None] | None = None,
                 host: str = "127.0.0.1", peer_host: str = "127.0.0.1",
                 call_id: str = "-") -> None:
        self._worker, self.rid = worker, rid
        self._options, self._on_digit = options, on_digit
        self._host, self._peer_host, self.call_id = host, peer_host, call_id
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opened: asyncio.Future[tuple[int, int]] | None = None
        self._done: asyncio.Future[Evidence | None] | None = None
        self._ports = (0, 0)
        self._closed = self.lost = self._refused = False
        self._final: Evidence | None = None

    async def open(self) -> None:
        """Ask the worker to bind both sockets; returns once their ports are known."""
        if self._closed or self._opened is not None:
            raise RelayClosed("media relay cannot be opened twice")
        self._loop = asyncio.get_running_loop()
        self._opened = self._loop.create_future()
        self._worker.request(self, {
            "op": "open", "id": self.rid, "host": self._host, "peer_host": self._peer_host,
            "call_id": self.call_id, "options": {"replacement": self._options.replacement,
                                                 "flush_after_ms": self._options.flush_after_ms}})
        try:
            async with asyncio.timeout(self._worker.open_timeout):
                self._ports = await self._opened
        except TimeoutError:
            raise MediaWorkerLost("the media worker did not open the relay in time") from None

    def set_peers(self, *, caller: Address | None = None, agent: Address | None = None) -> None:
        if self._closed or self.lost:
            raise RelayClosed("media relay is closed")
        self._worker.send({"op": "peers", "id": self.rid,
                           "caller": list(caller) if caller else None,
                           "agent": list(agent) if agent else None})

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def evidence(self) -> Evidence:
        """The final evidence once the worker closed the relay (before: zero counters)."""
        return self._final or Evidence(mode=self._options.replacement)

    def close(self) -> Evidence:
        """Ask the worker to close the relay (idempotent); the evidence known now. The final
        evidence arrives with the worker's answer: :meth:`aclose` waits for it."""
        if self._closed:
            return self.evidence
        self._closed = True
        # asked to open and neither refused nor lost (an open that timed out may still be
        # served: the worker handles requests in order, so this close follows it)
        if self._opened is not None and not self._refused and not self.lost \
                and self._loop is not None:
            self._done = self._loop.create_future()
            self._worker.send({"op": "close", "id": self.rid})
        else:
            self._worker.forget(self.rid)
        return self.evidence

    async def aclose(self) -> Evidence | None:
        """Close, then the final evidence from the worker; None when it was lost with it."""
        self.close()
        if self._final is not None or self._done is None:
            return None if self.lost else self.evidence
        try:
            async with asyncio.timeout(self._worker.open_timeout):
                return await asyncio.shield(self._done)
        except TimeoutError:
            log.error("media worker did not return a relay's evidence in time",
                      extra={"call_id": self.call_id})
            return None

    # -- the worker's messages ------------------------------------------------------------------
    def on_opened(self, caller_port: int, agent_port: int) -> None:
        if self._opened is not None and not self._opened.done():
            self._opened.set_result((caller_port, agent_port))

    def on_failed(self, reason: str) -> None:
        self._refused = True
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(RelayOpenFailed(
                "the media relay cannot open its ports", details={"reason": reason}))

    def on_digit(self, key: str, at: float) -> None:
        if self._on_digit is None:
            return
        try:
            self._on_digit(key, at)
        except Exception as exc:  # the key must not reach a traceback's locals dump
            log.error("on_digit callback failed: %s", type(exc).__name__,
                      extra={"call_id": self.call_id})

    def on_closed(self, evidence: Evidence) -> None:
        self._final = evidence
        if self._done is not None and not self._done.done():
            self._done.set_result(evidence)

    def on_lost(self) -> bool:
        """The worker died; True when the relay was open and its call had not closed it."""
        self.lost = True
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(MediaWorkerLost("the media worker died"))
        if self._done is not None and not self._done.done():
            self._done.set_result(None)
        return bool(self._ports[0]) and not self._closed


class MediaWorker:
    """The media worker process and its relays (relay id -> :class:`ProcessRelay`)."""

    def __init__(self, *, nice: int = 0, realtime: int = 0, open_timeout: float = 5.0,
                 on_lost: Callable[[str], None] | None = None) -> None:
        self.nice, self.open_timeout, self.on_lost = nice, open_timeout, on_lost
        self.realtime = realtime
        self._relays: dict[int, ProcessRelay] = {}
        self._ids = itertools.count(1)
        self._proc: asyncio.subprocess.Process | None = None
        self._backlog: list[bytes] = []
        self._wanted = asyncio.Event()
        #: Worker processes started so far.
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def relay(self, *, options: FilterOptions,
              on_digit: Callable[[str, float], None] | None = None, host: str = "127.0.0.1",
              peer_host: str = "127.0.0.1", call_id: str = "-") -> ProcessRelay:
        """The media service's relay factory."""
        return ProcessRelay(self, next(self._ids), options=options, on_digit=on_digit,
                            host=host, peer_host=peer_host, call_id=call_id)

    def request(self, relay: ProcessRelay, message: dict[str, Any]) -> None:
        self._relays[relay.rid] = relay
        self.send(message)

    def forget(self, rid: int) -> None:
        self._relays.pop(rid, None)

    def send(self, message: dict[str, Any]) -> None:
        data = ipc.encode(message)
        proc = self._proc
        if proc is not None and proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.write(data)
        else:  # the worker starts (again): run() sends the backlog first
            self._backlog.append(data)
            self._wanted.set()

    async def run(self) -> None:
        """Serve the worker while callsec runs: start it on demand, restart it on demand after
        it died, stop it when cancelled."""
        while True:
            await self._wanted.wait()
            try:
                proc = await self._spawn()
            except OSError as exc:
                log.error("media worker cannot start: %s", type(exc).__name__,
                          extra={"call_id": "-"})
                self._lose_all()
                await asyncio.sleep(1.0)
                continue
            self._proc = proc
            stopping = False
            try:
                await self._serve(proc)
            except asyncio.CancelledError:
                stopping = True  # callsec stops: its calls end anyway, nothing to report
                raise
            finally:
                self._proc = None
                await _reap(proc)
                self._lose_all(notify=not stopping)

    async def _spawn(self) -> asyncio.subprocess.Process:
        level = logging.getLevelName(logging.getLogger("callsec_ari.media").getEffectiveLevel())
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": _ROOT + (os.pathsep + path if path else "")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "callsec_ari.media.worker", "--nice", str(self.nice),
            "--realtime", str(self.realtime), "--log-level", str(level),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
            limit=ipc.MAX_LINE)
        self.starts += 1
        log.info("media worker started: pid %s", proc.pid, extra={"call_id": "-"})
        return proc

    async def _serve(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        for data in self._backlog:
            proc.stdin.write(data)
        self._backlog.clear()
        while True:
            try:
                line = await proc.stdout.readline()
            except ValueError:  # a line over the limit: the worker is broken
                log.error("media worker sent an oversized message", extra={"call_id": "-"})
                return
            if not line:
                return
            try:
                self._dispatch(ipc.decode(line))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("media worker sent a malformed message: %s", type(exc).__name__,
                          extra={"call_id": "-"})

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("ev")
        if kind == "log":
            logging.getLogger(str(msg["name"])).log(int(msg["level"]), "%s", msg["msg"],
                                                    extra={"call_id": str(msg["call_id"])})
            return
        rid = int(msg["id"])
        relay = self._relays.get(rid)
        if relay is None:
            return
        if kind == "opened":
            relay.on_opened(int(msg["caller_port"]), int(msg["agent_port"]))
        elif kind == "failed":
            self._relays.pop(rid, None)
            relay.on_failed(str(msg.get("reason", "")))
        elif kind == "digit":
            relay.on_digit(str(msg["key"]), float(msg["at"]))
        elif kind == "closed":
            self._relays.pop(rid, None)
            relay.on_closed(Evidence.from_dict(msg["evidence"]))

    def _lose_all(self, *, notify: bool = True) -> None:
        relays = list(self._relays.values())
        self._relays.clear()
        self._backlog.clear()
        self._wanted.clear()
        lost = [relay.call_id for relay in relays if relay.on_lost()]
        if relays and notify:
            log.error("media worker gone: %d relays lost", len(relays), extra={"call_id": "-"})
        if self.on_lost is not None and notify:
            for call_id in lost:
                self.on_lost(call_id)


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """End the worker: EOF on its stdin (it closes its relays and exits), else SIGKILL."""
    if proc.returncode is None and proc.stdin is not None:
        proc.stdin.close()
    try:
        async with asyncio.timeout(2.0):
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
    if proc.returncode:
        log.warning("media worker %s exited with status %s", proc.pid, proc.returncode,
                    extra={"call_id": "-"})
