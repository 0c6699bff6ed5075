"""AriClient against a real aiohttp server on 127.0.0.1 that emulates ARI (REST + events
websocket). Reconnect waits go through an injected ``sleep`` (recorded, never really waited)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import logging
import random
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from callsec_ari.ari import models as m
from callsec_ari.ari.client import AriClient
from callsec_ari.ari.errors import (
    AriAuthError,
    AriBadRequest,
    AriConflict,
    AriConnectionError,
    AriError,
    AriNotFound,
    AriServerError,
    AriUnprocessable,
)
from callsec_ari.ari.operations import STOP_RETRIES
from callsec_ari.core.errors import ConfigError

USER = "callsec"
PASSWORD = "s3cr&t:pa ss/wörd?"  # characters that break naive URL userinfo
EXPECTED_AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
TS = "2024-05-01T10:11:12.345+0000"


def channel_json(channel_id: str) -> dict[str, Any]:
    return {"id": channel_id, "name": f"PJSIP/pstn-{channel_id}", "state": "Up",
            "caller": {"name": "", "number": "+4915112345678"},
            "connected": {"name": "", "number": ""}, "accountcode": "", "protocol_id": "",
            "dialplan": {"context": "inbound", "exten": "s", "priority": 1,
                         "app_name": "Stasis", "app_data": "callsec"},
            "creationtime": TS, "language": "en"}


def dtmf(seq: int, digit: str = "5") -> dict[str, Any]:
    return {"type": "ChannelDtmfReceived", "application": "callsec", "timestamp": TS,
            "digit": digit, "duration_ms": seq, "channel": channel_json("c1")}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    url: str
    body: bytes


@dataclass
class Session:
    """One websocket connection's script: frames to send, then drop or hold the line."""

    frames: list[Any] = field(default_factory=list)
    drop: bool = False
    deaf: bool = False  # never answers pings: a half-open connection


class FakeAri:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.responses: dict[tuple[str, str], tuple[int, Any]] = {}
        self.sessions: list[Session] = []
        self.ws_requests: list[Recorded] = []
        self.ws_rest: list[dict[str, Any]] = []  # RESTRequest frames on the events websocket
        self.ws_rest_silent = False
        self.ws_status: int | None = None
        self.ws_closed_by_client = asyncio.Event()
        self.release = asyncio.Event()
        self.open_ws: set[web.WebSocketResponse] = set()
        self.app = web.Application()
        self.app.router.add_get("/ari/events", self.events)
        self.app.router.add_route("*", "/ari/{tail:.*}", self.rest)
        self.app.on_shutdown.append(self._shutdown)

    @staticmethod
    def _record(request: web.Request, body: bytes) -> Recorded:
        return Recorded(request.method, request.rel_url.raw_path, dict(request.query),
                        dict(request.headers), str(request.url), body)

    async def rest(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(self._record(request, await request.read()))
        if request.path == "/ari/slow":
            await self.release.wait()
        status, body = self.responses.get((request.method, request.path), (204, None))
        if body is None:
            return web.Response(status=status)
        return web.json_response(body, status=status)

    async def events(self, request: web.Request) -> web.StreamResponse:
        self.ws_requests.append(self._record(request, b""))
        if self.ws_status is not None:
            return web.json_response({"message": "Authentication required"},
                                     status=self.ws_status)
        index = len(self.ws_requests) - 1
        script = self.sessions[index] if index < len(self.sessions) else Session()
        ws = web.WebSocketResponse(autoping=not script.deaf)
        await ws.prepare(request)
        self.open_ws.add(ws)
        try:
            for frame in script.frames:
                await ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))
            if script.drop:
                await ws.close()
                return ws
            async for message in ws:
                await self._ws_rest(ws, message)
            self.ws_closed_by_client.set()
            return ws
        finally:
            self.open_ws.discard(ws)

    async def _ws_rest(self, ws: web.WebSocketResponse, message: aiohttp.WSMessage) -> None:
        """Asterisk 22: a ``RESTRequest`` frame is answered by a ``RESTResponse`` frame."""
        frame = json.loads(message.data) if message.type is aiohttp.WSMsgType.TEXT else {}
        if frame.get("type") != "RESTRequest":
            return
        self.ws_rest.append(frame)
        if self.ws_rest_silent:  # an app gone inactive under the websocket: no answer
            return
        status, body = self.responses.get((frame["method"], "/ari/" + frame["uri"]), (204, None))
        await ws.send_str(json.dumps({
            "type": "RESTResponse", "request_id": frame["request_id"], "status_code": status,
            "uri": frame["uri"], "message_body": "" if body is None else json.dumps(body)}))

    async def _shutdown(self, app: web.Application) -> None:
        self.release.set()
        for ws in list(self.open_ws):
            await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeAri, str]]:
    server = FakeAri()
    runner = web.AppRunner(server.app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield server, f"http://{host}:{port}"
    finally:
        await runner.cleanup()


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


class CeilingRandom(random.Random):
    """``uniform`` at its upper bound: exposes the exponential ceiling of each wait."""

    def uniform(self, a: float, b: float) -> float:
        return b


def make_client(url: str, **kwargs: Any) -> AriClient:
    kwargs.setdefault("sleep", SleepRecorder())
    return AriClient(url, USER, PASSWORD, ["callsec", "sim"], name="ast-a", **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def take(stream: AsyncIterator[m.AriEvent], count: int) -> list[m.AriEvent]:
    out: list[m.AriEvent] = []
    async with asyncio.timeout(10):
        while len(out) < count:
            out.append(await anext(stream))
    return out


# --------------------------------------------------------------------------- REST


@pytest.mark.parametrize(("status", "error"), [
    (400, AriBadRequest), (401, AriAuthError), (403, AriAuthError), (404, AriNotFound),
    (409, AriConflict), (412, AriConflict), (422, AriUnprocessable), (500, AriServerError),
    (503, AriServerError),
])
async def test_rest_error_status_maps_to_error_class_without_query_values(
        fake: tuple[FakeAri, str], status: int, error: type[AriError]) -> None:
    server, url = fake
    server.responses[("POST", "/ari/channels/c1/variable")] = (
        status, {"message": "Channel gone"})
    async with make_client(url) as ari:
        with pytest.raises(error) as caught:
            await ari.set_variable("c1", "CALLSEC_X", "4111111111111111")
    exc = caught.value
    assert (exc.method, exc.path, exc.ari_status, exc.ari_message) == (
        "POST", "/channels/c1/variable", status, "Channel gone")
    assert exc.server == "ast-a"
    text = str(exc) + json.dumps(exc.to_json())
    assert "4111" not in text and "value=" not in text and "?" not in text
    assert server.requests[0].query["value"] == "4111111111111111"


async def test_connection_refused_raises_connection_error() -> None:
    async with make_client(f"http://127.0.0.1:{free_port()}") as ari:
        with pytest.raises(AriConnectionError) as caught:
            await ari.set_variable("c1", "CALLSEC_PAN", "4111111111111111")
    assert caught.value.path == "/channels/c1/variable"
    assert "4111" not in str(caught.value)
    assert caught.value.status == 503


async def test_request_timeout_raises_connection_error(fake: tuple[FakeAri, str]) -> None:
    _, url = fake
    async with make_client(url, request_timeout=0.2) as ari:
        with pytest.raises(AriConnectionError, match=r"no answer within 0\.2s"):
            await ari.request("GET", "/slow")


async def test_rest_sends_basic_auth_header_and_no_credentials_in_url(
        fake: tuple[FakeAri, str], caplog: pytest.LogCaptureFixture) -> None:
    server, url = fake
    server.responses[("GET", "/ari/channels")] = (200, [channel_json("c1"), channel_json("c2")])
    caplog.set_level(logging.DEBUG)
    async with make_client(url) as ari:
        channels = await ari.list_channels()
    assert [c.id for c in channels] == ["c1", "c2"]
    recorded = server.requests[0]
    assert recorded.headers["Authorization"] == EXPECTED_AUTH
    assert PASSWORD not in recorded.url and "s3cr" not in recorded.url
    assert "s3cr" not in caplog.text


async def test_add_channel_sends_absorb_dtmf_and_mute_explicitly(
        fake: tuple[FakeAri, str]) -> None:
    server, url = fake
    async with make_client(url) as ari:
        await ari.add_channel("br-1", "c1", absorb_dtmf=False)
        await ari.add_channel("br-1", "c2", absorb_dtmf=True, mute=True, role="agent")
    first, second = server.requests
    assert first.path == "/ari/bridges/br-1/addChannel"
    assert first.query == {"channel": "c1", "absorbDTMF": "false", "mute": "false"}
    assert second.query == {"channel": "c2", "absorbDTMF": "true", "mute": "true", "role": "agent"}


async def test_play_sends_comma_separated_media_and_parses_playback(
        fake: tuple[FakeAri, str]) -> None:
    server, url = fake
    server.responses[("POST", "/ari/channels/c1/play")] = (201, {
        "id": "pb-1", "media_uri": "sound:a", "target_uri": "channel:c1", "state": "queued"})
    async with make_client(url) as ari:
        playback = await ari.play("c1", ["sound:a", "sound:b"], playback_id="pb-1", lang="de")
    assert playback == m.Playback(id="pb-1", media_uri="sound:a", target_uri="channel:c1",
                                  state="queued")
    assert server.requests[0].query == {"media": "sound:a,sound:b", "playbackId": "pb-1",
                                        "lang": "de"}


async def test_create_bridge_defaults_to_mixing_with_dtmf_events(
        fake: tuple[FakeAri, str]) -> None:
    server, url = fake
    server.responses[("POST", "/ari/bridges")] = (200, {
        "id": "br-9", "technology": "simple_bridge", "bridge_type": "mixing",
        "bridge_class": "stasis", "creator": "Stasis", "name": "", "channels": [],
        "creationtime": TS})
    async with make_client(url) as ari:
        created = await ari.create_bridge("br-9")
    assert created.id == "br-9" and created.channels == ()
    assert server.requests[0].query == {"type": "mixing,dtmf_events", "bridgeId": "br-9"}


async def test_originate_puts_variables_in_body(fake: tuple[FakeAri, str]) -> None:
    server, url = fake
    server.responses[("POST", "/ari/channels")] = (200, channel_json("o1"))
    async with make_client(url) as ari:
        created = await ari.originate("PJSIP/4930123@pbx", app="sim", app_args=["a", "b"],
                                      caller_id="+4915112345678", variables={"X": "1"})
    assert created.id == "o1"
    originate, = server.requests
    assert originate.query == {"endpoint": "PJSIP/4930123@pbx", "app": "sim", "appArgs": "a,b",
                               "callerId": "+4915112345678", "timeout": "30"}
    assert json.loads(originate.body) == {"variables": {"X": "1"}}


async def test_helpers_percent_encode_ids_and_use_swagger_paths(
        fake: tuple[FakeAri, str]) -> None:
    server, url = fake
    server.responses[("GET", "/ari/channels/a b;1/variable")] = (200, {"value": "yes"})
    async with make_client(url) as ari:
        assert await ari.get_variable("a b;1", "CALLSEC_OK") == "yes"
        await ari.hangup("c1")
        await ari.continue_in_dialplan("c1", context="agents", extension="s", priority=1)
        await ari.stop_playback("pb/1")
    seen = [(r.method, r.path, r.query) for r in server.requests]
    assert seen == [
        ("GET", "/ari/channels/a%20b;1/variable", {"variable": "CALLSEC_OK"}),
        ("DELETE", "/ari/channels/c1", {"reason": "normal"}),
        ("POST", "/ari/channels/c1/continue", {"context": "agents", "extension": "s",
                                               "priority": "1"}),
        ("DELETE", "/ari/playbacks/pb%2F1", {}),
    ]


async def test_rest_goes_over_the_events_websocket_while_it_is_read(
        fake: tuple[FakeAri, str]) -> None:
    server, url = fake
    server.responses[("GET", "/ari/channels/c1/variable")] = (200, {"value": "yes"})
    server.responses[("DELETE", "/ari/channels/c2")] = (404, {"message": "Channel not found"})
    async with make_client(url, rest_over_websocket=True) as ari:
        assert await ari.get_variable("c1", "CALLSEC_OK") == "yes"  # no websocket yet: HTTP
        async with contextlib.aclosing(ari.events()) as events:
            assert isinstance(await anext(events), m.Connected)
            reader = asyncio.create_task(anext(events))  # the adapter reads the events
            await asyncio.sleep(0.05)
            assert await ari.get_variable("c1", "CALLSEC_OK") == "yes"
            with pytest.raises(AriNotFound) as caught:
                await ari.hangup("c2")
            await ari.set_variable("c1", "CALLSEC_X", "4111111111111111")
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    assert caught.value.ari_message == "Channel not found" and "4111" not in str(caught.value)
    assert [(r.method, r.path) for r in server.requests] == [
        ("GET", "/ari/channels/c1/variable")]
    assert [(f["method"], f["uri"], f["query_strings"]) for f in server.ws_rest] == [
        ("GET", "channels/c1/variable", [{"name": "variable", "value": "CALLSEC_OK"}]),
        ("DELETE", "channels/c2", [{"name": "reason", "value": "normal"}]),
        ("POST", "channels/c1/variable", [{"name": "variable", "value": "CALLSEC_X"},
                                          {"name": "value", "value": "4111111111111111"}])]


async def test_a_websocket_that_leaves_a_rest_call_unanswered_is_not_used_for_rest_again(
        fake: tuple[FakeAri, str]) -> None:
    server, url = fake
    server.ws_rest_silent = True
    async with make_client(url, rest_over_websocket=True, request_timeout=0.3) as ari:
        async with contextlib.aclosing(ari.events()) as events:
            await anext(events)
            reader = asyncio.create_task(anext(events))
            await asyncio.sleep(0.05)
            with pytest.raises(AriConnectionError, match=r"no answer within 0\.3s"):
                await ari.answer("c1")
            await ari.answer("c2")  # over HTTP now
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    assert [f["uri"] for f in server.ws_rest] == ["channels/c1/answer"]
    assert [r.path for r in server.requests] == ["/ari/channels/c2/answer"]


async def test_calls_after_one_blocked_on_the_websocket_go_over_http_without_waiting(
        fake: tuple[FakeAri, str]) -> None:
    """Asterisk answers one websocket's REST frames one after the other: a call blocked
    there must not hold the next ones until the timeout (they go over HTTP at once)."""
    server, url = fake
    server.ws_rest_silent = True  # the first call on the websocket blocks
    async with make_client(url, rest_over_websocket=True, request_timeout=3.0) as ari:
        async with contextlib.aclosing(ari.events()) as events:
            await anext(events)
            reader = asyncio.create_task(anext(events))
            await asyncio.sleep(0.05)
            blocked = asyncio.create_task(ari.answer("c1"))
            await asyncio.sleep(0.3)
            started = asyncio.get_running_loop().time()
            await ari.answer("c2")
            await ari.answer("c3")
            took = asyncio.get_running_loop().time() - started
            blocked.cancel()
            reader.cancel()
            for task in (blocked, reader):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    assert took < 1.0, took
    assert [f["uri"] for f in server.ws_rest] == ["channels/c1/answer"]
    assert [r.path for r in server.requests] == ["/ari/channels/c2/answer",
                                                 "/ari/channels/c3/answer"]


async def test_rest_waiting_on_a_dropped_websocket_fails_as_a_lost_connection(
        fake: tuple[FakeAri, str]) -> None:
    server, url = fake
    async with make_client(url, rest_over_websocket=True, request_timeout=5.0) as ari:
        async with contextlib.aclosing(ari.events()) as events:
            await anext(events)
            reader = asyncio.create_task(anext(events))
            await asyncio.sleep(0.05)
            server.responses[("POST", "/ari/channels/c1/answer")] = (204, None)
            for ws in list(server.open_ws):  # Asterisk goes away before it answers
                server.open_ws.discard(ws)
                await ws.close()
            with contextlib.suppress(AriConnectionError):
                await ari.answer("c1")  # sent on the closing websocket or over HTTP
            assert isinstance(await reader, m.Disconnected)


async def test_client_closes_its_own_session_but_not_a_passed_one(
        fake: tuple[FakeAri, str]) -> None:
    _, url = fake
    own = make_client(url)
    async with own:
        await own.answer("c1")
    assert own._session is not None and own._session.closed
    async with aiohttp.ClientSession() as shared:
        async with make_client(url, session=shared) as ari:
            await ari.answer("c1")
        assert not shared.closed


# --------------------------------------------------------------------------- events


async def test_events_arrive_in_order_after_connected(fake: tuple[FakeAri, str]) -> None:
    server, url = fake
    server.sessions = [Session(frames=[dtmf(i) for i in range(1, 101)])]
    async with make_client(url) as ari, contextlib.aclosing(ari.events()) as stream:
        got = await take(stream, 101)
    assert got[0] == m.Connected(server="ast-a", reconnect=False)
    assert [e.duration_ms for e in got[1:] if isinstance(e, m.ChannelDtmfReceived)] == list(
        range(1, 101))


async def test_websocket_uses_auth_header_and_only_apps_in_the_url(
        fake: tuple[FakeAri, str]) -> None:
    server, url = fake
    async with make_client(url) as ari:
        async with contextlib.aclosing(ari.events()) as stream:
            await take(stream, 1)
        await asyncio.wait_for(server.ws_closed_by_client.wait(), 10)  # aclose closed it
        client_side = str(ari._ws_url)
    recorded = server.ws_requests[0]
    assert recorded.headers["Authorization"] == EXPECTED_AUTH
    assert recorded.query == {"app": "callsec,sim", "subscribeAll": "false"}  # no api_key
    for text in (recorded.url, client_side):
        assert "s3cr" not in text and "@" not in text


async def test_dropped_websocket_yields_disconnected_then_reconnects_and_continues(
        fake: tuple[FakeAri, str], caplog: pytest.LogCaptureFixture) -> None:
    server, url = fake
    server.sessions = [Session(frames=[dtmf(1), dtmf(2)], drop=True),
                       Session(frames=[dtmf(3)])]
    caplog.set_level(logging.INFO, logger="callsec_ari.ari.client")
    async with make_client(url) as ari, contextlib.aclosing(ari.events()) as stream:
        got = await take(stream, 6)
        assert ari.reconnects == 1
    kinds = [type(e).__name__ for e in got]
    assert kinds == ["Connected", "ChannelDtmfReceived", "ChannelDtmfReceived", "Disconnected",
                     "Connected", "ChannelDtmfReceived"]
    assert got[3] == m.Disconnected(server="ast-a", reason="closed by server (code 1000)")
    assert got[4] == m.Connected(server="ast-a", reconnect=True)
    assert [e.duration_ms for e in got if isinstance(e, m.ChannelDtmfReceived)] == [1, 2, 3]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "ast-a" in warnings[0].getMessage() and "reconnecting in" in warnings[0].getMessage()
    assert any("reconnected" in r.getMessage() and r.levelno == logging.INFO
               for r in caplog.records)
    assert not any("digit" in r.getMessage() for r in caplog.records)


async def test_heartbeat_detects_a_server_that_stopped_answering(
        fake: tuple[FakeAri, str]) -> None:
    server, url = fake
    server.sessions = [Session(frames=[dtmf(1)], deaf=True), Session(frames=[dtmf(2)])]
    async with make_client(url, heartbeat=0.2) as ari, \
            contextlib.aclosing(ari.events()) as stream:
        got = await take(stream, 5)
    assert [type(e).__name__ for e in got] == [
        "Connected", "ChannelDtmfReceived", "Disconnected", "Connected", "ChannelDtmfReceived"]
    assert isinstance(got[2], m.Disconnected) and got[2].reason


async def test_reconnect_waits_grow_exponentially_up_to_the_maximum(
        fake: tuple[FakeAri, str]) -> None:
    server, url = fake
    server.sessions = [Session(drop=True) for _ in range(7)]
    sleep = SleepRecorder()
    async with make_client(url, sleep=sleep, rng=CeilingRandom(), reconnect_min=0.5,
                           reconnect_max=6.0) as ari, contextlib.aclosing(ari.events()) as stream:
        await take(stream, 2 * 7 + 1)
    assert sleep.delays == [0.5, 1.0, 2.0, 4.0, 6.0, 6.0, 6.0]


async def test_reconnect_waits_are_jittered_within_their_bounds(
        fake: tuple[FakeAri, str]) -> None:
    server, url = fake
    server.sessions = [Session(drop=True) for _ in range(8)]
    sleep = SleepRecorder()
    async with make_client(url, sleep=sleep, rng=random.Random(1234), reconnect_min=0.5,
                           reconnect_max=10.0) as ari, contextlib.aclosing(ari.events()) as stream:
        await take(stream, 2 * 8 + 1)
    assert len(sleep.delays) == 8
    for attempt, delay in enumerate(sleep.delays):
        assert 0.5 <= delay <= min(10.0, 0.5 * 2**attempt)
    ceilings = [min(10.0, 0.5 * 2**n) for n in range(8)]
    assert sleep.delays != ceilings  # jitter, not a fixed schedule
    assert len(set(sleep.delays[1:])) == 7


async def test_backoff_resets_after_a_connection_that_stayed_up(
        fake: tuple[FakeAri, str]) -> None:
    server, url = fake
    server.sessions = [Session(drop=True) for _ in range(4)]
    sleep = SleepRecorder()
    async with make_client(url, sleep=sleep, rng=CeilingRandom(), stable_after=0.0) as ari, \
            contextlib.aclosing(ari.events()) as stream:
        await take(stream, 2 * 4 + 1)
    assert sleep.delays == [0.5, 0.5, 0.5, 0.5]


async def test_websocket_401_raises_auth_error_and_does_not_retry(
        fake: tuple[FakeAri, str]) -> None:
    server, url = fake
    server.ws_status = 401
    sleep = SleepRecorder()
    async with make_client(url, sleep=sleep) as ari:
        with pytest.raises(AriAuthError, match="credentials") as caught:
            async with contextlib.aclosing(ari.events()) as stream:
                await take(stream, 1)
    assert caught.value.ari_status == 401
    assert len(server.ws_requests) == 1 and sleep.delays == []
    assert "s3cr" not in str(caught.value)


async def test_unreachable_server_reports_one_disconnected_and_keeps_retrying(
        caplog: pytest.LogCaptureFixture) -> None:
    class StopRetrying(Exception):
        pass

    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) == 4:
            raise StopRetrying

    caplog.set_level(logging.INFO, logger="callsec_ari.ari.client")
    seen: list[m.AriEvent] = []
    async with make_client(f"http://127.0.0.1:{free_port()}", sleep=sleep,
                           rng=CeilingRandom()) as ari:
        with pytest.raises(StopRetrying):
            async with contextlib.aclosing(ari.events()) as stream:
                async for event in stream:
                    seen.append(event)
    assert len(seen) == 1 and isinstance(seen[0], m.Disconnected)
    assert seen[0].reason.startswith("cannot connect (")
    assert delays == [0.5, 1.0, 2.0, 4.0]
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING, logging.INFO, logging.INFO, logging.INFO]


async def test_unknown_and_malformed_frames(fake: tuple[FakeAri, str],
                                             caplog: pytest.LogCaptureFixture) -> None:
    server, url = fake
    talking = {"type": "ChannelTalkingStarted", "application": "callsec", "timestamp": TS,
               "channel": channel_json("c1")}
    server.sessions = [Session(frames=["not json 4111", {"no": "type"},
                                       {"type": "StasisEnd"}, talking, dtmf(7)])]
    caplog.set_level(logging.DEBUG, logger="callsec_ari.ari.client")
    async with make_client(url) as ari, contextlib.aclosing(ari.events()) as stream:
        got = await take(stream, 3)
    assert type(got[1]) is m.UnknownEvent and got[1].type == "ChannelTalkingStarted"
    assert got[1].raw["channel"]["id"] == "c1"
    assert isinstance(got[2], m.ChannelDtmfReceived)
    skipped = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 3 and all(r.levelno == logging.WARNING for r in skipped)
    assert "4111" not in caplog.text and "+4915112345678" not in caplog.text


async def test_cancelling_the_consumer_closes_the_websocket_cleanly(
        fake: tuple[FakeAri, str], caplog: pytest.LogCaptureFixture) -> None:
    server, url = fake
    connected = asyncio.Event()

    async def consume(ari: AriClient) -> None:
        async for event in ari.events():
            if isinstance(event, m.Connected):
                connected.set()

    caplog.set_level(logging.DEBUG)
    async with make_client(url) as ari:
        async with asyncio.TaskGroup() as group:
            task = group.create_task(consume(ari))
            await asyncio.wait_for(connected.wait(), 10)
            await asyncio.sleep(0.05)  # the consumer now waits inside ws.receive()
            task.cancel()
        await asyncio.wait_for(server.ws_closed_by_client.wait(), 10)
        assert not ari._websockets
    gc.collect()
    await asyncio.sleep(0)
    assert "Unclosed" not in caplog.text


async def test_closing_the_client_ends_a_suspended_event_stream(
        fake: tuple[FakeAri, str]) -> None:
    server, url = fake
    ari = make_client(url)
    async with ari:
        stream = ari.events()
        await take(stream, 1)
    await asyncio.wait_for(server.ws_closed_by_client.wait(), 10)
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


# --------------------------------------------------------------------------- construction


@pytest.mark.parametrize(("base", "rest", "events"), [
    ("http://127.0.0.1:18088", "http://127.0.0.1:18088/ari",
     "ws://127.0.0.1:18088/ari/events?app=callsec,sim&subscribeAll=false"),
    ("https://pbx.example:8089/asterisk/ari/", "https://pbx.example:8089/asterisk/ari",
     "wss://pbx.example:8089/asterisk/ari/events?app=callsec,sim&subscribeAll=false"),
])
def test_base_url_gets_ari_suffix_and_matching_websocket_scheme(
        base: str, rest: str, events: str) -> None:
    ari = make_client(base)
    assert (ari._rest_base, str(ari._ws_url)) == (rest, events)
    assert "s3cr" not in repr(ari) and "Basic" not in repr(ari)


def test_credentials_in_the_base_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigError) as caught:
        make_client("http://callsec:s3cr3t@127.0.0.1:18088")
    assert "s3cr3t" not in str(caught.value)
    with pytest.raises(ConfigError):
        AriClient("http://127.0.0.1:18088", "callsec", "x", ["a,b"])


async def test_requests_queued_for_a_connection_do_not_time_out_while_waiting() -> None:
    """A burst larger than the connection pool waits its turn; only Asterisk's own answer
    time is bounded by request_timeout."""
    async def answer_slowly(request: web.Request) -> web.Response:
        await asyncio.sleep(0.15)
        return web.json_response({"id": request.match_info["id"]})

    app = web.Application()
    app.router.add_get("/ari/channels/{id}", answer_slowly)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with make_client(f"http://127.0.0.1:{port}", request_timeout=0.25,
                               max_connections=1) as ari:
            answers = await asyncio.gather(*(ari.request("GET", f"/channels/c{i}")
                                             for i in range(4)))  # the last waits ~0.45 s
        assert [a["id"] for a in answers] == ["c0", "c1", "c2", "c3"]
    finally:
        await runner.cleanup()


async def test_a_stop_answered_500_between_two_media_is_sent_again_until_it_takes(
        fake: tuple[FakeAri, str]) -> None:
    """Asterisk answers 500 to a stop that lands while a playback moves from one media to the
    next, and the next one then plays to its end (the caller's next command waits on the
    channel): the stop is sent again."""
    server, url = fake
    server.responses[("DELETE", "/ari/playbacks/pb-1")] = (500, {"message": "failed"})

    async def asterisk_recovers() -> None:
        while not server.requests:
            await asyncio.sleep(0.005)
        server.responses[("DELETE", "/ari/playbacks/pb-1")] = (204, None)

    async with make_client(url) as ari, asyncio.TaskGroup() as tg:
        tg.create_task(asterisk_recovers())
        await ari.stop_playback("pb-1")
    assert [(r.method, r.path) for r in server.requests] == \
        [("DELETE", "/ari/playbacks/pb-1")] * 2


async def test_a_stop_that_keeps_failing_fails_after_its_retries(
        fake: tuple[FakeAri, str]) -> None:
    server, url = fake
    server.responses[("DELETE", "/ari/playbacks/pb-2")] = (500, {"message": "failed"})
    async with make_client(url) as ari:
        with pytest.raises(AriServerError):
            await ari.stop_playback("pb-2")
    assert len(server.requests) == STOP_RETRIES + 1
