"""``callsec status``: what a running ``callsec run`` is doing, in the spirit of ``asterisk -rx``.

``callsec run`` answers on a unix socket (``[status] socket``, mode 0600 in a directory of its
own choosing: only the user callsec runs as, and root, may ask; like Asterisk's
``asterisk.ctl``). Why a socket and not the HTTP API: it needs no token or staff login, is
never reachable from the network, works with ``[web] enabled = no``, and file permissions are
the access control. The protocol is one line ``status`` in, one JSON object out.

The answer: connections (ARI per server, AMI, FastAGI, HTTP), active calls by flow and state,
calls started and finished since start by flow and result, queue depths and the last warning
and error log lines (redacted as every log line is, kept by :class:`ErrorRing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections import Counter, deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callsec_ari import __version__
from callsec_ari.logs import redact_text
from callsec_ari.runtime.metrics import flow_of

if TYPE_CHECKING:
    from callsec_ari.app import Application

log = logging.getLogger(__name__)
REQUEST = b"status\n"
#: ``callsec status`` exit codes (as LSB ``status`` actions): running, not running, unknown.
EXIT_RUNNING, EXIT_NOT_RUNNING, EXIT_UNKNOWN = 0, 3, 4


class ErrorRing(logging.Handler):
    """Keeps the last ``size`` warning and error records, redacted, for ``callsec status``."""

    def __init__(self, size: int = 20) -> None:
        super().__init__(logging.WARNING)
        self.records: deque[dict[str, Any]] = deque(maxlen=max(size, 0))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = redact_text(record.getMessage())
        except Exception:  # a record that cannot be formatted is still an error worth a line
            message = "(unformattable log record)"
        self.records.append({"time": record.created, "level": record.levelname,
                             "logger": record.name,
                             "call_id": str(getattr(record, "call_id", "-")),
                             "message": message})


def _connections(app: Application) -> dict[str, Any]:
    web = app.settings.web
    out: dict[str, Any] = {
        "ari": [{"server": a.server, "connected": a.connected.is_set(),
                 "reconnects": a.client.reconnects} for a in app.adapters],
        "ami": None, "agi": None,
        "http": {"enabled": web.enabled, "listen": f"{web.host}:{web.port}",
                 "listening": app.web is not None and app.web.started.is_set()},
    }
    if app.ami is not None:
        out["ami"] = {"server": app.ami.server, "connected": app.ami.connected,
                      "reconnects": app.ami.reconnects}
    if app.agi_server is not None:
        agi = app.agi_server
        out["agi"] = {"listen": f"{agi.host}:{agi.port}", "listening": agi.ready.is_set(),
                      "sessions": agi.connections}
    return out


def _calls(app: Application) -> dict[str, Any]:
    active: Counter[tuple[str, str]] = Counter()
    events = 0
    for call in app.dispatcher:
        active[(flow_of(call), call.flow.state_name)] += 1
        events += call.queue.qsize()
    totals: dict[str, dict[str, int]] = {}
    if app.metrics is not None:
        for (flow, what), count in sorted(app.metrics.totals.items()):
            totals.setdefault(flow, {})[what] = count
    return {"active": sum(active.values()),
            "by_flow_state": [{"flow": f, "state": s, "calls": n}
                              for (f, s), n in sorted(active.items())],
            "since_start": totals, "queued_events": events}


def snapshot(app: Application) -> dict[str, Any]:
    """Everything ``callsec status`` shows; masked (no digits from calls, no secrets)."""
    calls = _calls(app)
    queues = {"dispatcher_events": calls.pop("queued_events"),
              "late_records": len(app.late_records) if app.late_records is not None else 0,
              "agi_refusal_audit": app.refusals.pending if app.refusals is not None else 0,
              "sse_subscribers": app.bus.subscribers,
              "webhook_events": app.webhook_service.pending if app.webhook_service else 0}
    return {"version": __version__, "pid": os.getpid(),
            "uptime_seconds": round(time.monotonic() - app.started_monotonic, 1),
            "connections": _connections(app), "calls": calls, "queues": queues,
            "cluster": app.cluster.status(),
            "last_errors": list(app.error_ring.records)}


class ControlServer:
    """The unix socket ``callsec status`` asks; one request per connection."""

    def __init__(self, app: Application, path: Path) -> None:
        self.app = app
        self.path = path

    async def serve(self) -> None:
        try:
            if not await self._claim():
                return
            server = await asyncio.start_unix_server(self._answer, path=str(self.path))
            os.chmod(self.path, 0o600)
        except OSError as exc:  # no status socket is no reason to stop taking calls
            log.warning("status socket %s unavailable (%s): `callsec status` cannot ask",
                        self.path, type(exc).__name__, extra={"call_id": "-"})
            return
        log.info("status socket: %s", self.path, extra={"call_id": "-"})
        try:
            async with server:
                await server.serve_forever()
        finally:
            with contextlib.suppress(OSError):
                self.path.unlink()

    async def _claim(self) -> bool:
        """Remove a socket left by a callsec that died; keep one that another callsec answers."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            return True
        try:
            _, writer = await asyncio.open_unix_connection(str(self.path))
        except OSError:
            self.path.unlink(missing_ok=True)
            return True
        writer.close()
        log.warning("status socket %s answers already (another callsec run?); `callsec status`"
                    " asks that one", self.path, extra={"call_id": "-"})
        return False

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                line = await reader.readline()
                if line == REQUEST:
                    writer.write(json.dumps(snapshot(self.app)).encode() + b"\n")
                    await writer.drain()
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()


def ask(path: Path, timeout: float = 5.0) -> dict[str, Any]:
    """The running callsec's snapshot. Raises ``FileNotFoundError``/``ConnectionRefusedError``
    (not running), ``PermissionError`` and ``OSError``/``ValueError`` (no usable answer)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(REQUEST)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer = json.loads(b"".join(chunks))
    if not isinstance(answer, dict):
        raise ValueError("not a status object")
    return answer
