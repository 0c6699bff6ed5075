"""An asyncio FastAGI server: one :class:`AgiSession` per connection from Asterisk.

Every connection runs as a task in the TaskGroup that :meth:`AgiServer.serve` owns. The header
block is read under a timeout, so a client that stalls or disconnects during the headers costs
one log line and nothing else. Commands and their replies go through :class:`AgiSession`, which
holds the connection's single request/response channel under a lock (re-entrant for the task
that holds it, see :meth:`AgiSession.exclusive`), skips the unsolicited ``HANGUP`` line (and
remembers it), and consumes multi-line ``520`` replies completely, so replies always stay
paired with their commands.

Only peers in ``peers`` (``[agi] allowed_peers``; loopback by default) are served: another
peer's connection is aborted in the accept callback, before a byte of it is read, and reported
to ``on_refused`` (the composition root logs and audits it, see :mod:`.refusals`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from callsec_ari.agi.protocol import (
    AgiCommandError,
    AgiDisconnected,
    AgiError,
    AgiHangup,
    AgiProtocolError,
    AgiReply,
    AgiRequest,
    HangupLine,
    HeaderParser,
    ReplyParser,
    format_command,
)
from callsec_ari.agi.trust import PeerFilter
from callsec_ari.core.errors import Unavailable

log = logging.getLogger(__name__)

SessionHandler = Callable[["AgiSession"], Awaitable[None]]

#: 511: "Command Not Permitted on a dead channel or intercept routine".
DEAD_CHANNEL = 511


class AgiSession:
    """One FastAGI connection: typed AGI commands over a reader/writer pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 request: AgiRequest, *, peer: str = "-", peer_host: str = "-") -> None:
        self.request = request
        self.peer = peer
        #: The peer's address alone (no port), as ``allowed_peers`` names it.
        self.peer_host = peer_host
        self._reader = reader
        self._writer = writer
        self._parser = ReplyParser()
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[object] | None = None
        self._hung_up = False
        self._closed = False

    @property
    def hung_up(self) -> bool:
        """Asterisk said the channel is gone (``HANGUP`` line, ``511``, ``-1``) or EOF."""
        return self._hung_up

    @property
    def closed(self) -> bool:
        return self._closed

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold the request/response channel for several commands (re-entrant per task)."""
        task = asyncio.current_task()
        if task is not None and self._owner is task:
            yield
            return
        async with self._lock:
            self._owner = task
            try:
                yield
            finally:
                self._owner = None

    # -- the raw exchange -------------------------------------------------------------------
    async def command(self, command: str, *args: str) -> AgiReply:
        """Send one command and return its ``200`` reply. ``511`` raises :class:`AgiHangup`,
        other codes :class:`AgiCommandError`; EOF raises :class:`AgiHangup`."""
        line = format_command(command, *args)
        async with self.exclusive():
            if self._closed:
                raise AgiHangup(f"AGI session closed; {command} not sent")
            try:
                self._writer.write(line)
                await self._writer.drain()
                reply = await self._read_reply()
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                self._lost()
                raise AgiHangup(f"AGI connection lost during {command}") from exc
            except ValueError as exc:  # a reply line longer than the stream limit
                self._broken()
                raise AgiProtocolError(f"oversized AGI reply to {command}") from exc
            except asyncio.CancelledError:
                self._broken()  # the reply is unread: the channel is out of step for good
                raise
        if reply.code == 200:
            return reply
        if reply.code == DEAD_CHANNEL:
            self._hung_up = True
            raise AgiHangup(f"{command}: channel is dead")
        raise AgiCommandError(f"{command} refused with {reply.code}", code=reply.code,
                              usage=reply.usage)

    async def _read_reply(self) -> AgiReply:
        while True:
            raw = await self._reader.readline()
            if not raw.endswith(b"\n"):
                raise asyncio.IncompleteReadError(raw, None)
            try:
                item = self._parser.feed(raw.decode("utf-8", "replace"))
            except AgiProtocolError:
                self._broken()
                raise
            if isinstance(item, HangupLine):
                self._hung_up = True
                continue
            if item is not None:
                return item

    def _lost(self) -> None:
        self._hung_up = True
        self._broken()

    def _broken(self) -> None:
        self._closed = True
        self._writer.close()

    async def close(self) -> None:
        """End the session: Asterisk sees EOF and goes on in the dialplan."""
        async with self.exclusive():
            if not self._closed:
                self._closed = True
                self._writer.close()

    # -- typed helpers ----------------------------------------------------------------------
    async def answer(self) -> None:
        if (await self.command("ANSWER")).result_int != 0:
            raise AgiCommandError("ANSWER failed", code=200)

    async def stream_file(self, name: str, escape_digits: str = "") -> tuple[str | None, int]:
        """Play a file; returns the key that interrupted it (or ``None``) and the end offset.
        ``result=-1`` (file missing, or the channel hung up) raises :class:`AgiCommandError`."""
        reply = await self.command("STREAM FILE", name, escape_digits)
        return self._key(reply, "STREAM FILE"), reply.endpos or 0

    async def say(self, command: str, target: str, escape_digits: str = "") -> str | None:
        """``SAY DIGITS|NUMBER|ALPHA``; returns the interrupting key, if any."""
        return self._key(await self.command(command, target, escape_digits), command)

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        reply = await self.command("WAIT FOR DIGIT", str(timeout_ms))
        if reply.result_int == -1:
            self._hung_up = True
            raise AgiHangup("WAIT FOR DIGIT: channel hung up")
        return self._key(reply, "WAIT FOR DIGIT")

    async def set_variable(self, name: str, value: str) -> None:
        await self.command("SET VARIABLE", name, value)

    async def get_variable(self, name: str) -> str | None:
        return self._value(await self.command("GET VARIABLE", name))

    async def verbose(self, message: str, level: int = 1) -> None:
        await self.command("VERBOSE", message, str(level))

    async def noop(self) -> None:
        """A command every channel state allows: its reply flushes a pending ``HANGUP`` line."""
        await self.command("NOOP")

    async def hangup(self) -> None:
        await self.command("HANGUP")
        self._hung_up = True

    @staticmethod
    def _key(reply: AgiReply, command: str) -> str | None:
        code = reply.result_int
        if code is None or code < 0:
            raise AgiCommandError(f"{command} failed", code=200)
        return chr(code) if code > 0 else None

    @staticmethod
    def _value(reply: AgiReply) -> str | None:
        return reply.data if reply.result_int == 1 else None


class AgiServer:
    """Listens on ``host:port``; hands every connection's :class:`AgiSession` to ``handler``."""

    def __init__(self, handler: SessionHandler, *, host: str = "127.0.0.1", port: int = 4573,
                 header_timeout: float = 5.0, line_limit: int = 65536,
                 peers: PeerFilter | None = None,
                 on_refused: Callable[[str], None] | None = None) -> None:
        self.handler = handler
        self.peers = peers if peers is not None else PeerFilter.from_strings()
        self.on_refused = on_refused
        self.host = host
        self.port = port
        self.header_timeout = header_timeout
        self.line_limit = line_limit
        #: Set once the socket listens; :attr:`port` is then the bound port (``0`` resolved).
        self.ready = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def connections(self) -> int:
        """Connections being served right now."""
        return len(self._tasks)

    async def serve(self) -> None:
        """Serve until cancelled; then every connection task is cancelled and awaited."""
        try:
            server = await asyncio.start_server(self._accept, self.host, self.port,
                                                limit=self.line_limit, start_serving=False)
        except OSError as exc:
            raise Unavailable(f"[agi] cannot listen on {self.host}:{self.port}: "
                              f"{exc.strerror or exc}") from exc
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                await server.start_serving()
                self.port = server.sockets[0].getsockname()[1]
                self.ready.set()
                log.info("FastAGI listening on %s:%s", self.host, self.port,
                         extra={"call_id": "-"})
                try:
                    await asyncio.Future()  # until cancelled
                finally:
                    self._tg = None
                    server.close()
                    for task in list(self._tasks):
                        task.cancel()
        finally:
            self.ready.clear()
            server.close()
            await server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._tg is None:  # shutting down
            writer.transport.abort()
            return
        host, _ = _peer(writer)
        if not self.peers.allows(host):
            writer.transport.abort()  # at once: nothing of the peer's is read
            if self.on_refused is not None:
                self.on_refused(host)
            else:
                log.warning("FastAGI connection from %s refused: not an allowed peer", host,
                            extra={"call_id": "-"})
            return
        task = self._tg.create_task(self._connection(reader, writer), name="agi-connection")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        host, peer = _peer(writer)
        try:
            request = await self._read_request(reader, peer)
            if request is None:
                return
            await self.handler(AgiSession(reader, writer, request, peer=peer, peer_host=host))
        except AgiError as exc:
            log.warning("AGI session from %s ended: %s", peer, exc.error_id,
                        extra={"call_id": "-"})
        except Exception:  # one broken session must not end the server
            log.exception("AGI session from %s crashed", peer, extra={"call_id": "-"})
        finally:
            if writer.transport.get_write_buffer_size():
                writer.transport.abort()  # the peer stopped reading: do not linger
            else:
                writer.close()

    async def _read_request(self, reader: asyncio.StreamReader, peer: str) -> AgiRequest | None:
        parser = HeaderParser()
        try:
            async with asyncio.timeout(self.header_timeout):
                while True:
                    raw = await reader.readline()
                    if not raw.endswith(b"\n"):
                        raise AgiDisconnected("connection closed during the AGI headers")
                    request = parser.feed(raw.decode("utf-8", "replace"))
                    if request is not None:
                        return request
        except TimeoutError:
            log.warning("AGI client %s sent no complete header block within %.1f s; closing",
                        peer, self.header_timeout, extra={"call_id": "-"})
        except (AgiDisconnected, ConnectionError):
            log.warning("AGI client %s disconnected during the headers", peer,
                        extra={"call_id": "-"})
        except (AgiProtocolError, ValueError):
            log.warning("AGI client %s sent a malformed header block; closing", peer,
                        extra={"call_id": "-"})
        return None


def _peer(writer: asyncio.StreamWriter) -> tuple[str, str]:
    """The peer's address and ``address:port`` (``-`` when the socket has none)."""
    info = writer.get_extra_info("peername")
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), f"{info[0]}:{info[1]}"
    return "-", "-"
