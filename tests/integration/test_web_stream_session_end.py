"""A progress stream (``GET /api/v1/calls/{id}/events``) lives no longer than the session it
was opened with: logout, ``callsec users disable`` (another process: the CLI) or an expiry
end it within about a second, however busy the other calls are and however long the
heartbeat interval is, while the streams of other users keep flowing."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from callsec_ari.cli import main as cli_main
from tests.integration.web_env import WebEnv, web_env

pytestmark = pytest.mark.asyncio

#: The promise: a stream of an ended session stops within a second (plus slack for a busy CI).
WITHIN = 1.0
SLACK = 0.5


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[WebEnv]:
    async with web_env(tmp_path) as e:
        e.deps.sse_heartbeat_seconds = 15.0  # the shipped default, not web_env's 0.5 s
        yield e


async def next_event(resp: aiohttp.ClientResponse) -> tuple[str, dict[str, Any]] | None:
    """The next event of the stream (heartbeats skipped); None at its end."""
    while True:
        try:
            block = (await resp.content.readuntil(b"\n\n")).decode()
        except (asyncio.IncompleteReadError, aiohttp.ClientPayloadError):
            return None
        if not block or block.startswith(":"):
            if not block:
                return None
            continue
        fields = dict(line.split(": ", 1) for line in block.strip().splitlines())
        return fields["event"], json.loads(fields["data"])


async def open_stream(env: WebEnv, call_id: str,
                      headers: dict[str, str]) -> aiohttp.ClientResponse:
    resp = await env.client.get(f"/api/v1/calls/{call_id}/events", headers=headers)
    assert resp.status == 200, await resp.text()
    first = await next_event(resp)
    assert first is not None and first[0] == "snapshot"
    return resp


async def chatter(env: WebEnv, call_id: str, stop: asyncio.Event) -> None:
    """Another call keeps the bus busy: an event every 50 ms."""
    count = 0
    while not stop.is_set():
        count += 1
        env.bus.publish(call_id, "capture", {"field": "iban", "count": count % 20})
        await asyncio.sleep(0.05)


async def ended_within(resp: aiohttp.ClientResponse, seconds: float) -> float:
    """Read the stream until it ends; how long that took (fails after ``seconds``)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(seconds):
        while await next_event(resp) is not None:
            pass
    return loop.time() - started


async def end_session_and_watch(env: WebEnv, end: Callable[[dict[str, str]], Awaitable[None]],
                                *, busy: bool) -> None:
    anna = await env.login("anna")
    carla = await env.login("carla")
    mine = await open_stream(env, "C-100", anna)
    other = await open_stream(env, "C-102", carla)  # carla's call, her own session
    stop = asyncio.Event()
    noise = asyncio.create_task(chatter(env, "C-102", stop)) if busy else None
    try:
        await asyncio.sleep(0.3)
        await end(anna)
        took = await ended_within(mine, WITHIN + SLACK)
        assert took <= WITHIN + SLACK, took
        if noise is None:
            env.bus.publish("C-102", "capture", {"field": "iban", "count": 1})
        seen = await asyncio.wait_for(next_event(other), 2.0)  # carla's stream flows on
        assert seen is not None and seen[1]["call_id"] == "C-102"
    finally:
        stop.set()
        if noise is not None:
            await noise
        mine.close()
        other.close()


def logout(env: WebEnv) -> Callable[[dict[str, str]], Awaitable[None]]:
    async def end(headers: dict[str, str]) -> None:
        resp = await env.client.post("/api/v1/logout", headers=headers)
        assert resp.status == 200
    return end


def cli_disable(env: WebEnv) -> Callable[[dict[str, str]], Awaitable[None]]:
    async def end(headers: dict[str, str]) -> None:
        code = await asyncio.to_thread(cli_main, ["-c", str(env.config_path), "users",
                                                  "disable", "anna"])
        assert code == 0
    return end


@pytest.mark.parametrize("busy", [True, False], ids=["other-call-busy", "quiet"])
async def test_stream_of_a_logged_out_user_ends_within_a_second(env: WebEnv,
                                                                busy: bool) -> None:
    await end_session_and_watch(env, logout(env), busy=busy)


@pytest.mark.parametrize("busy", [True, False], ids=["other-call-busy", "quiet"])
async def test_stream_of_a_user_disabled_on_the_cli_ends_within_a_second(env: WebEnv,
                                                                         busy: bool) -> None:
    await end_session_and_watch(env, cli_disable(env), busy=busy)


async def test_stream_of_an_expired_session_ends_while_its_own_call_is_busy(
        env: WebEnv) -> None:
    anna = await env.login("anna")
    mine = await open_stream(env, "C-100", anna)
    stop = asyncio.Event()
    noise = asyncio.create_task(chatter(env, "C-100", stop))  # anna's own call chatters
    try:
        env.clock.advance(env.settings.web.session_ttl_seconds + 1)
        took = await ended_within(mine, WITHIN + SLACK)
        assert took <= WITHIN + SLACK
    finally:
        stop.set()
        await noise
        with contextlib.suppress(Exception):
            mine.close()
