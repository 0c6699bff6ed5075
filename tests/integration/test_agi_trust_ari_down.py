"""FastAGI fails closed when Asterisk cannot confirm a session over ARI (#14 point 5).

``callsec run`` reaches A's ARI through a small proxy in this test, which forwards every request
and the event websocket, but can answer ``GET /channels/{id}`` (the session check's lookup) with
503, over HTTP and as a ``RESTRequest`` on the websocket (callsec sends REST calls over it). A real call from the carrier to 3000 (``AGI(.../verify)``) for a real customer then gets no
code: the session is refused with a clear log line and an ``agi.session_refused`` audit row
(``asterisk_unreachable``), and A's dialplan goes on with ``CALLSEC_RESULT`` unset and
``AGISTATUS=SUCCESS``. Once ARI answers again the same call verifies as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from tests.harness.callsec_proc import CallsecProcess, code_from
from tests.harness.carrier import Carrier
from tests.harness.sandbox import AGI_PORT, A, Sandbox
from tests.integration.capture_env import (
    a_channel,
    clean_workdir,
    fresh_caller,
    wait_no_other_callsec,
    workdir,
)
from tests.integration.test_agi_sandbox import a_var, wait_var

pytestmark = pytest.mark.sandbox
WORKDIR = workdir("agi-ari-down")
_CHANNEL = re.compile(r"^/ari/channels/[^/]+$")


class AriProxy:
    """Forwards REST and the websocket to A; :attr:`fail_lookups` makes channel GETs 503."""

    def __init__(self) -> None:
        self.fail_lookups = False
        self.lookups = 0
        self.port = 0
        self._session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        headers = {"Authorization": request.headers.get("Authorization", "")}
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, headers)
        if request.method == "GET" and _CHANNEL.match(request.path):
            self.lookups += 1
            if self.fail_lookups:
                return web.json_response({"message": "proxy: ARI is down"}, status=503)
        if request.content_type:
            headers["Content-Type"] = request.content_type
        async with self._session.request(request.method, A.base_url + str(request.rel_url),
                                         headers=headers, data=await request.read()) as resp:
            body = await resp.read()
            kind = resp.headers.get("Content-Type", "application/json")
            return web.Response(status=resp.status, body=body, headers={"Content-Type": kind})

    async def _websocket(self, request: web.Request,
                         headers: dict[str, str]) -> web.StreamResponse:
        assert self._session is not None
        downstream = web.WebSocketResponse()
        await downstream.prepare(request)
        async with self._session.ws_connect(A.base_url + str(request.rel_url),
                                            headers=headers) as upstream:
            async def pump(src: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
                           dst: aiohttp.ClientWebSocketResponse | web.WebSocketResponse) -> None:
                async for msg in src:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        await dst.send_str(msg.data)
            async def requests() -> None:  # REST calls over the websocket (Asterisk 22)
                async for msg in downstream:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        refused = self._refused(msg.data)
                        await (downstream.send_str(refused) if refused is not None
                               else upstream.send_str(msg.data))
            tasks = [asyncio.create_task(pump(upstream, downstream)),
                     asyncio.create_task(requests())]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
        await downstream.close()
        return downstream

    def _refused(self, text: str) -> str | None:
        """A ``RESTRequest`` frame's ``GET channels/{id}`` is a lookup too: answered with a
        503 ``RESTResponse`` here while lookups fail (None: forward the frame)."""
        frame = json.loads(text)
        if not (isinstance(frame, dict) and frame.get("type") == "RESTRequest"
                and frame.get("method") == "GET"
                and _CHANNEL.match("/ari/" + str(frame.get("uri", "")))):
            return None
        self.lookups += 1
        if not self.fail_lookups:
            return None
        return json.dumps({"type": "RESTResponse", "request_id": frame.get("request_id"),
                           "status_code": 503, "reason_phrase": "Service Unavailable",
                           "content_type": "application/json",
                           "message_body": json.dumps({"message": "proxy: ARI is down"})})

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[AriProxy]:
        async with aiohttp.ClientSession() as session:
            self._session = session
            server = web.Server(self.handle)
            runner = web.ServerRunner(server)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = runner.addresses[0][1]
            try:
                yield self
            finally:
                await runner.cleanup()


@pytest.fixture(scope="module")
async def proxied(sandbox: Sandbox, register_secret: Callable[[str], None]
                  ) -> AsyncIterator[tuple[CallsecProcess, AriProxy]]:
    clean_workdir(WORKDIR)
    async with AriProxy().running() as proxy:
        proc = CallsecProcess(WORKDIR, env_overrides={
            "CALLSEC_ARI__URLS": f"http://127.0.0.1:{proxy.port}",
            "CALLSEC_AGI__PORT": str(AGI_PORT)})
        await wait_no_other_callsec()
        await proc.start()
        try:
            yield proc, proxy
        finally:
            proc.stop()
            for message in proc.outbox_messages():
                register_secret(code_from(message))


def refused_rows() -> list[dict[str, str]]:
    with contextlib.closing(sqlite3.connect(f"file:{WORKDIR / 'callsec.db'}?mode=ro",
                                            uri=True)) as db:
        rows = db.execute("SELECT target, details FROM audit_log "
                          "WHERE action = 'agi.session_refused'").fetchall()
    return [{"target": target, **json.loads(details)} for target, details in rows]


async def test_ari_down_refuses_a_real_agi_session_and_the_dialplan_goes_on_unverified(
        proxied: tuple[CallsecProcess, AriProxy], carrier: Carrier,
        ari_a: aiohttp.ClientSession) -> None:
    callsec, proxy = proxied
    mobile = fresh_caller()
    callsec.add_customer(name="Ari Down", mobile=mobile)
    proxy.fail_lookups = True
    call = await carrier.call("3000", caller_id=mobile)
    channel = str((await a_channel(ari_a, mobile, "3000"))["id"])
    assert await wait_var(ari_a, channel, "AGISTATUS", timeout=15) == "SUCCESS"
    assert not await a_var(ari_a, channel, "CALLSEC_RESULT")  # never "verified"
    assert proxy.lookups >= 1
    assert callsec.outbox_messages() == []  # no code for the real customer either
    log = callsec.log_text()
    assert "cannot confirm the AGI session with asterisk1" in log and "refusing it" in log
    assert mobile not in log
    async with asyncio.timeout(10):
        while not any(row["target"] == f"agi-{channel}" for row in refused_rows()):
            await asyncio.sleep(0.2)
    row = next(r for r in refused_rows() if r["target"] == f"agi-{channel}")
    assert row["reason"] == "asterisk_unreachable" and row["flow"] == "verify"
    await call.hangup()
    # ARI answers again: the same kind of call verifies as usual (the proxy is not the fault)
    proxy.fail_lookups = False
    call = await carrier.call("3000", caller_id=mobile)
    await call.wait_up(timeout=15)
    message = await callsec.wait_message(1)
    assert message["to"] == mobile
    await call.hangup()
