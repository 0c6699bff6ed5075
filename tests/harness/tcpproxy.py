"""A TCP proxy for fault tests: put it between callsec and A's ARI and break the link at will.

    async with TcpProxy(18088) as proxy:                 # listens on 127.0.0.1:<free port>
        env = {"CALLSEC_ARI__URLS": proxy.url}           # callsec talks to Asterisk through it
        ...
        proxy.drop()                                     # every open connection is cut (RST),
                                                         # the events websocket included
        await proxy.refuse(3.0)                          # new connections refused for 3 s
        async with proxy.hold():                         # ... or for as long as the block runs
            ...

Asterisk sees the websocket go away (as when the network between the two breaks), so the
channels in Stasis stay where they are and the events Asterisk raises meanwhile are lost; callsec
sees its websocket and its pooled REST connections reset, and reconnecting is refused (the
listening socket is closed: ``ECONNREFUSED``) until the proxy accepts again on the same port.

Structured concurrency: the accept loop and every connection's two pumps live in the proxy's
``asyncio.TaskGroup``, entered and left with the ``async with`` block.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator
from types import TracebackType

CHUNK = 65536


class _Link:
    """One proxied connection: the client's side and the upstream side."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream

    def close(self) -> None:
        self.client.close()
        self.upstream.close()

    def reset(self) -> None:
        """Abort both sides with a TCP RST (SO_LINGER 0): a broken link, not a polite close."""
        for writer in (self.client, self.upstream):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()


class TcpProxy:
    """Forwards 127.0.0.1:``port`` (0: a free port) to ``upstream_host``:``upstream_port``."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", *,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = port
        #: Connections accepted, and connections cut by :meth:`drop`, since the start.
        self.accepted = 0
        self.dropped = 0
        #: ``time.monotonic()`` of the last :meth:`drop` and of the last return to accepting.
        self.dropped_at = 0.0
        self.accepting_since = 0.0
        self._links: set[_Link] = set()
        #: cleared while :meth:`stalled` runs: nothing moves from upstream to the clients
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._epoch = 0  # counts drops: a connection accepted before one is cut as well
        self._listener: socket.socket | None = None
        self._acceptor: asyncio.Task[None] | None = None
        self._group: asyncio.TaskGroup | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def open_connections(self) -> int:
        return len(self._links)

    @property
    def accepting(self) -> bool:
        return self._listener is not None

    # -- life cycle -----------------------------------------------------------------------
    async def __aenter__(self) -> TcpProxy:
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self.accept()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._stop_accepting()
        for link in list(self._links):
            link.close()
        group, self._group = self._group, None
        assert group is not None
        # The body's exception propagates by itself; the group only waits for its tasks.
        await group.__aexit__(None, None, None)

    # -- faults -----------------------------------------------------------------------------
    def drop(self) -> int:
        """Cut every open connection (both sides, with a reset); how many were open."""
        self._epoch += 1
        links = list(self._links)
        for link in links:
            link.reset()
        self.dropped += len(links)
        self.dropped_at = time.monotonic()
        return len(links)

    async def refuse_now(self) -> None:
        """Close the listening socket: new connections are refused until :meth:`accept`."""
        await self._stop_accepting()

    def accept(self) -> None:
        """Listen again (on the same port as before)."""
        if self._listener is not None:
            return
        if self._group is None:
            raise RuntimeError("TcpProxy used outside 'async with'")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self.accepting_since = time.monotonic()
        self._acceptor = self._group.create_task(self._accept_loop(listener),
                                                 name=f"tcpproxy-accept-{self.port}")

    async def refuse(self, seconds: float) -> None:
        """Refuse new connections for ``seconds``, then accept again."""
        async with self.hold():
            await asyncio.sleep(seconds)

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """New connections are refused while the block runs."""
        await self.refuse_now()
        try:
            yield
        finally:
            self.accept()

    @contextlib.asynccontextmanager
    async def stalled(self) -> AsyncIterator[None]:
        """Nothing upstream sends reaches the clients while the block runs (it waits in the
        proxy and in TCP's buffers) and all of it arrives at once afterwards: a slow link, an
        event websocket that delivers late and in a burst. Connections stay up."""
        self._flowing.clear()
        try:
            yield
        finally:
            self._flowing.set()

    async def outage(self, seconds: float) -> None:
        """The link breaks for ``seconds``: :meth:`drop` now, refuse, then accept again."""
        async with self.hold():
            self.drop()
            await asyncio.sleep(seconds)

    # -- forwarding -------------------------------------------------------------------------
    async def _stop_accepting(self) -> None:
        """Cancel the accept loop and wait until it closed the listening socket (closing it
        first would let the loop's pending accept unregister a new listener on the same fd)."""
        task, self._acceptor, self._listener = self._acceptor, None, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                client, _ = await loop.sock_accept(listener)
                self.accepted += 1
                assert self._group is not None
                self._group.create_task(self._serve(client, self._epoch),
                                        name=f"tcpproxy-link-{self.accepted}")
        finally:
            listener.close()

    async def _serve(self, client: socket.socket, epoch: int) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client.close()  # upstream down: the client sees its connection closed
            return
        reader, writer = await asyncio.open_connection(sock=client)
        link = _Link(writer, up_writer)
        self._links.add(link)
        if epoch != self._epoch:  # dropped while this connection was being set up
            link.reset()
        try:
            async with asyncio.TaskGroup() as pumps:
                pumps.create_task(_pump(reader, up_writer, link))
                pumps.create_task(_pump(up_reader, writer, link, self._flowing))
        finally:
            self._links.discard(link)
            link.close()


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link,
                flowing: asyncio.Event | None = None) -> None:
    """Copy until either side ends; then close both (the other pump ends with it)."""
    try:
        while data := await source.read(CHUNK):
            if flowing is not None:
                await flowing.wait()
            sink.write(data)
            await sink.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        link.close()
