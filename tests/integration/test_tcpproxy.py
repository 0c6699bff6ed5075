"""The fault-test proxy (tests/harness/tcpproxy.py) against a real echo server on loopback:
it forwards, it cuts open connections, it refuses new ones for a while and then accepts again on
the same port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.harness.tcpproxy import TcpProxy


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def roundtrip(port: int, payload: bytes = b"ping") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), 5)
    finally:
        writer.close()


async def test_proxy_forwards_both_ways(echo_port: int) -> None:
    async with TcpProxy(echo_port) as proxy:
        assert await roundtrip(proxy.port, b"hello through the proxy") == \
            b"hello through the proxy"
        assert proxy.accepted == 1


async def test_drop_cuts_every_open_connection(echo_port: int) -> None:
    async with TcpProxy(echo_port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"x")
        await writer.drain()
        assert await reader.readexactly(1) == b"x"
        assert proxy.drop() == 1
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 5)
        writer.close()
        assert await roundtrip(proxy.port) == b"ping"  # new connections are not affected


async def test_refused_while_held_then_accepted_again_on_the_same_port(echo_port: int) -> None:
    async with TcpProxy(echo_port) as proxy:
        port = proxy.port
        async with proxy.hold():
            assert not proxy.accepting
            with pytest.raises(ConnectionRefusedError):
                await roundtrip(port)
        assert proxy.port == port and proxy.accepting
        assert await roundtrip(port) == b"ping"


async def test_outage_drops_refuses_for_its_duration_then_recovers(echo_port: int) -> None:
    async with TcpProxy(echo_port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"x")
        await writer.drain()
        assert await reader.readexactly(1) == b"x"
        async with asyncio.TaskGroup() as tg:
            tg.create_task(proxy.outage(0.5))
            await asyncio.sleep(0.1)
            with pytest.raises(ConnectionRefusedError):
                await roundtrip(proxy.port)
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                await asyncio.wait_for(reader.readexactly(1), 5)  # cut
        writer.close()
        assert proxy.dropped == 1
        assert await roundtrip(proxy.port) == b"ping"
