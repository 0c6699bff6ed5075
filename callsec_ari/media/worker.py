"""The media worker process: many :class:`~callsec_ari.media.relay.MediaRelay` objects on one
asyncio loop of their own, so nothing on callsec's event loop (REST bursts, vault stores, JSON,
its GIL) can delay a frame.

    python -m callsec_ari.media.worker [--nice N] [--realtime PRIORITY] [--log-level LEVEL]

callsec (:class:`~callsec_ari.media.process.MediaWorker`) starts it and talks to it over its
stdin/stdout (:mod:`callsec_ari.media.ipc`). EOF on stdin (callsec stopped or died) closes every
relay and ends the process. The worker lowers or raises nothing unless ``--nice`` says so;
``--realtime P`` (1-99) asks for SCHED_RR at priority P, and without the privilege for it logs
a warning and runs on under normal scheduling.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from callsec_ari.loopwatch import LoopWatch, settle_heap
from callsec_ari.media import ipc
from callsec_ari.media.relay import FilterOptions, MediaRelay

log = logging.getLogger("callsec_ari.media.worker")  # not __main__ (run with -m)

Send = Callable[[dict[str, Any]], None]


class _Forward(logging.Handler):
    """Log records go to callsec as ``log`` messages (callsec owns the log file)."""

    def __init__(self, send: Send) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._send({"ev": "log", "level": record.levelno, "name": record.name,
                        "msg": record.getMessage(),
                        "call_id": str(getattr(record, "call_id", "-"))})
        except Exception:  # a log line must never stop the relays
            self.handleError(record)


class WorkerServer:
    """The worker's side of the protocol: relay id -> relay."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.relays: dict[int, MediaRelay] = {}

    async def handle(self, message: dict[str, Any]) -> None:
        op, rid = message.get("op"), int(message["id"])
        if op == "open":
            await self._open(rid, message)
        elif op == "peers":
            relay = self.relays.get(rid)
            if relay is not None:
                relay.set_peers(caller=ipc.address(message.get("caller")),
                                agent=ipc.address(message.get("agent")))
        elif op == "close":
            self._close(rid)

    async def _open(self, rid: int, message: dict[str, Any]) -> None:
        options = message.get("options") or {}
        relay = MediaRelay(
            options=FilterOptions(replacement=options.get("replacement", "silence"),
                                  flush_after_ms=float(options.get("flush_after_ms", 25.0))),
            on_digit=self._digit_sink(rid), host=str(message["host"]),
            peer_host=str(message["peer_host"]), call_id=str(message.get("call_id", "-")))
        self.relays[rid] = relay
        try:
            await relay.open()
        except Exception as exc:  # OSError (no port), RelayClosed: callsec hears why
            self.relays.pop(rid, None)
            self._send({"ev": "failed", "id": rid, "reason": type(exc).__name__})
            return
        self._send({"ev": "opened", "id": rid, "caller_port": relay.caller_port,
                    "agent_port": relay.agent_port})

    def _digit_sink(self, rid: int) -> Callable[[str, float], None]:
        def digit(key: str, at: float) -> None:
            self._send({"ev": "digit", "id": rid, "key": key, "at": at})
        return digit

    def _close(self, rid: int) -> None:
        relay = self.relays.pop(rid, None)
        if relay is not None:
            self._send({"ev": "closed", "id": rid, "evidence": relay.close().as_dict()})

    def close_all(self) -> None:
        for rid in list(self.relays):
            self._close(rid)


async def serve(reader: asyncio.StreamReader, send: Send) -> None:
    """Handle requests until EOF on ``reader``; then close every relay."""
    server = WorkerServer(send)
    try:
        while line := await reader.readline():
            if line.strip():
                await server.handle(ipc.decode(line))
    finally:
        server.close_all()


def _schedule(nice: int, realtime: int) -> None:
    if nice:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    if realtime:
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(realtime))
        except PermissionError:
            log.warning("media worker: realtime priority %s refused (needs CAP_SYS_NICE or an"
                        " RLIMIT_RTPRIO of at least %s); running with normal scheduling",
                        realtime, realtime, extra={"call_id": "-"})
        else:
            log.info("media worker: SCHED_RR priority %s", realtime, extra={"call_id": "-"})


async def _main(nice: int, realtime: int, level: str) -> None:
    loop = asyncio.get_running_loop()
    out_fd = os.dup(1)  # the protocol's own copy of stdout; stray prints go to stderr
    os.dup2(2, 1)
    out, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, os.fdopen(out_fd, "wb"))
    sys.stdout = sys.stderr

    def send(message: dict[str, Any]) -> None:
        if not out.is_closing():
            out.write(ipc.encode(message))

    root = logging.getLogger()
    root.addHandler(_Forward(send))
    root.setLevel(level)
    _schedule(nice, realtime)
    settle_heap()  # numpy and the rest of start-up leave the collector's view: short pauses
    reader = asyncio.StreamReader(limit=ipc.MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                 os.fdopen(0, "rb"))
    try:
        async with asyncio.TaskGroup() as tg:
            # a frame's budget is 20 ms: a stall of that size is worth a line in callsec's log
            watch = tg.create_task(LoopWatch(interval=0.01, warn_after=0.02).run())
            await serve(reader, send)
            watch.cancel()
    finally:
        out.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="callsec_ari.media.worker")
    parser.add_argument("--nice", type=int, default=0)
    parser.add_argument("--realtime", type=int, default=0, choices=range(100), metavar="0-99")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops callsec, which stops us (EOF)
    asyncio.run(_main(args.nice, args.realtime, args.log_level))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
