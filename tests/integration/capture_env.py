"""Shared by the capture sandbox modules: the real ``callsec run`` with an agent user, the
agent's desk over the real HTTP API (login with TOTP), the SSE recorder, connected calls to
2100 (MixMonitor on the caller's channel, then ``Stasis(callsec,connect,PJSIP/agent100)``),
audio checks on WAVs (Goertzel) and the leak checks.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import pyotp

from callsec_ari.capture.fields import iban_check_digits
from tests.harness.agent import AgentCall, AgentPhones
from tests.harness.callsec_proc import REPO, CallsecProcess, code_from
from tests.harness.carrier import Carrier, CarrierCall
from tests.harness.sandbox import A, B
from tests.integration.capture_checks import whole_number

AGENT = "agent100"
AGENT_USER = "anna"
AGENT_PASSWORD = "correct horse battery staple"
#: Settings every capture module runs with: no verification (connect at once), two attempts
#: per field (the invalid-Luhn test), no FastAGI (its port stays free for the AGI module).
CAPTURE_ENV = {
    "CALLSEC_POLICY_DEFAULT__REQUIRE_CODE": "never",
    "CALLSEC_CAPTURE__MAX_ATTEMPTS": "2",
    "CALLSEC_CAPTURE__FIRST_DIGIT_TIMEOUT_SECONDS": "12",
    "CALLSEC_CAPTURE__INTER_DIGIT_TIMEOUT_SECONDS": "6",
    "CALLSEC_AGI__ENABLED": "no",
}
_numbers = itertools.count(100)


def fresh_caller() -> str:
    return f"+49152{os.getpid() % 1000:03d}{next(_numbers):05d}"


# --- test values ------------------------------------------------------------------------------

def luhn_complete(prefix: str, length: int) -> str:
    """``prefix`` + random digits + the Luhn check digit, ``length`` digits in all."""
    body = prefix + "".join(random.choice("0123456789") for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def visa() -> str:
    return luhn_complete("4" + random.choice("0123456789"), 16)


def amex() -> str:
    return luhn_complete(random.choice(("34", "37")), 15)


def break_luhn(number: str) -> str:
    return number[:-1] + str((int(number[-1]) + 1) % 10)


def expiry(years_ahead: int = 3) -> str:
    today = date.today()
    return f"{today.month:02d}{(today.year + years_ahead) % 100:02d}"


def past_expiry() -> str:
    today = date.today()
    return f"{today.month:02d}{(today.year - 1) % 100:02d}"


def german_iban_digits() -> str:
    """The 20 digits a caller keys after ``DE`` (check digits + BLZ + account)."""
    bban = "".join(random.choice("0123456789") for _ in range(18))
    return iban_check_digits("DE", bban) + bban


def rare_number(digits: int) -> str:
    """A CVV that the Asterisk logs do not hold as a whole number yet (so a leak scan cannot
    match it by chance); for 3 digits, whose every value is in the logs' timestamps, one that
    :func:`find_leaks`' stricter pattern does not match."""
    texts = [p.read_bytes() for p in (A.full_log, B.full_log) if p.exists()]
    low = 600 if digits == 3 else 10 ** (digits - 1) + 1  # 3 digits: no HTTP status
    for _ in range(500):
        value = str(random.randint(low, 10 ** digits - 1))
        pattern = whole_number(value) if digits < 4 else \
            re.compile(rb"(?<!\d)" + value.encode() + rb"(?!\d)")
        if not value.startswith(("19", "20")) and not any(pattern.search(t) for t in texts):
            return value
    raise RuntimeError(f"no {digits}-digit value is absent from the Asterisk logs")


# --- the product process and the agent's desk ----------------------------------------------------

def add_agent(proc: CallsecProcess, name: str = AGENT_USER, endpoint: str = AGENT) -> str:
    """``callsec users add NAME --role agent --endpoint ...``; the TOTP secret it printed."""
    result = proc.cli("users", "add", name, "--role", "agent", "--endpoint", endpoint,
                      "--password-stdin", stdin=AGENT_PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    uri = next(line for line in result.stdout.splitlines() if line.startswith("otpauth://"))
    return str(pyotp.parse_uri(uri).secret)


@dataclass
class Desk:
    """The agent's side of the HTTP API (a bearer token from a real login)."""

    base: str
    session: aiohttp.ClientSession
    token: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def login(self, name: str, password: str, totp_secret: str) -> None:
        async with self.session.post(f"{self.base}/api/v1/login", json={
                "username": name, "password": password,
                "otp": pyotp.TOTP(totp_secret).now()}) as resp:
            assert resp.status == 200, await resp.text()
            self.token = (await resp.json())["token"]

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, f"{self.base}{path}", json=body,
                                        headers=self.headers) as resp:
            data = await resp.json() if resp.content_type == "application/json" \
                else await resp.text()
            return resp.status, data

    async def request_capture(self, call_id: str, fields: Sequence[str]) -> str:
        status, data = await self.call("POST", f"/api/v1/calls/{call_id}/captures",
                                       {"fields": list(fields)})
        assert status == 201, (status, data)
        return str(data["capture_id"])

    async def capture(self, capture_id: str) -> dict[str, Any]:
        status, data = await self.call("GET", f"/api/v1/captures/{capture_id}")
        assert status == 200, (status, data)
        return dict(data)

    async def wait_capture(self, capture_id: str, state: str | None = None,
                           timeout: float = 15.0) -> dict[str, Any]:
        """Until the capture has a final state (``state`` if given)."""
        async with asyncio.timeout(timeout):
            while True:
                data = await self.capture(capture_id)
                if data["state"] not in ("in_progress", "requested") and \
                        (state is None or data["state"] == state):
                    return data
                await asyncio.sleep(0.3)

    async def wait_state(self, call_id: str, state: str, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while True:
                status, calls = await self.call("GET", "/api/v1/calls")
                assert status == 200, calls
                items = calls["calls"] if isinstance(calls, dict) else calls
                if any(c["call_id"] == call_id and c["state"] == state for c in items):
                    return
                await asyncio.sleep(0.2)


class SseRecorder:
    """Reads ``GET /api/v1/calls/{id}/events`` in the background; raw bytes go to ``path``."""

    def __init__(self, desk: Desk, call_id: str, path: Path) -> None:
        self.desk, self.call_id, self.path = desk, call_id, path
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()

    async def run(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        url = f"{self.desk.base}/api/v1/calls/{self.call_id}/events"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        with self.path.open("ab") as out:
            async with self.desk.session.get(url, headers=self.desk.headers,
                                             timeout=timeout) as resp:
                assert resp.status == 200, await resp.text()
                async for raw in resp.content:
                    out.write(raw)
                    out.flush()
                    line = raw.decode().strip()
                    if line.startswith("data: "):
                        async with self._changed:
                            self.events.append(json.loads(line[6:]))
                            self._changed.notify_all()
                        if self.events[-1].get("topic") is None and "call_id" in self.events[-1] \
                                and len(self.events[-1]) == 1:
                            return  # the "end" event

    def capture_events(self, capture_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events
                if e.get("topic") == "capture" and e.get("capture_id") == capture_id]

    async def wait(self, predicate: Callable[[dict[str, Any]], bool],
                   timeout: float = 20.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                await self._changed.wait()

    async def wait_stage(self, capture_id: str, stage: str, timeout: float = 20.0,
                         **match: Any) -> dict[str, Any]:
        return await self.wait(lambda e: e.get("topic") == "capture"
                               and e.get("capture_id") == capture_id and e.get("stage") == stage
                               and all(e.get(k) == v for k, v in match.items()), timeout)


# --- a connected call ---------------------------------------------------------------------------

@dataclass
class LiveCall:
    caller: str
    carrier: CarrierCall
    agent: AgentCall
    call_id: str
    channel_name: str
    sse: SseRecorder
    #: ``time.monotonic()`` when the agent's recording started (its WAV's t = 0, about).
    agent_t0: float
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> float:
        self.marks[name] = time.monotonic()
        return self.marks[name]

    @property
    def mixmonitor(self) -> Path:
        return A.monitor_dir / f"callsec-mixmon-{self.call_id}.wav"


async def a_channel(ari_a: aiohttp.ClientSession, caller: str, exten: str,
                    timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            async with ari_a.get("/ari/channels") as resp:
                for channel in await resp.json():
                    if channel["caller"]["number"] == caller and \
                            channel["dialplan"]["exten"] == exten:
                        return dict(channel)
            await asyncio.sleep(0.1)


@asynccontextmanager
async def connected_call(desk: Desk, carrier: Carrier, agents: AgentPhones,
                         ari_a: aiohttp.ClientSession, sse_dir: Path,
                         exten: str = "2100") -> AsyncIterator[LiveCall]:
    """A call from the carrier to ``exten`` that callsec connected to agent100, with its SSE
    stream recorded into ``sse_dir/<call id>.sse`` while the block runs."""
    caller = fresh_caller()
    before = agents.seen(AGENT)  # callsec dials the agent as it answers the caller
    carrier_call = await carrier.call(exten, caller_id=caller)
    await carrier_call.wait_up(timeout=15)
    agent = await agents.wait_ringing(AGENT, timeout=20, known=before)
    agent_t0 = time.monotonic()
    channel = await a_channel(ari_a, caller, exten)
    call_id = str(channel["id"])
    await desk.wait_state(call_id, "connected")
    sse = SseRecorder(desk, call_id, sse_dir / f"{call_id}.sse")
    async with asyncio.TaskGroup() as tg:
        reader = tg.create_task(sse.run())
        await sse.wait(lambda e: e.get("call_id") == call_id, timeout=5)  # the snapshot
        live = LiveCall(caller, carrier_call, agent, call_id, str(channel["name"]), sse, agent_t0)
        try:
            yield live
        finally:
            await carrier_call.hangup()
            try:
                async with asyncio.timeout(10):
                    await reader
            except TimeoutError:
                reader.cancel()


async def send_tone(call: CarrierCall, hz: int = 1000, ms: int = 600) -> tuple[float, float]:
    """The caller sends a pure tone (audio, not DTMF signalling); its monotonic start/end."""
    start = time.monotonic()
    await call.play_tone(f"{hz}", ms)
    return start, time.monotonic()


async def type_fields(live: LiveCall, capture_id: str, entries: Sequence[tuple[str, str]],
                      *, between_ms: int = 120, duration_ms: int = 120) -> None:
    """For each (field, keys): wait until callsec asks for the field, then type the keys."""
    for name, keys in entries:
        await live.sse.wait_stage(capture_id, "field_started", field=name)
        await asyncio.sleep(0.4)  # the prompt starts; the first key interrupts it
        await live.carrier.send_dtmf(keys, between_ms=between_ms, duration_ms=duration_ms)


def workdir(name: str) -> Path:
    return REPO / "var" / "test" / name


def clean_workdir(root: Path) -> None:
    """No database, outbox, log, SSE file or key of a previous run left in ``root``."""
    for sub in ("callsec.db", "callsec.db-wal", "callsec.db-shm", "outbox", "log", "sse", "keys"):
        path = root / sub
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


@asynccontextmanager
async def running_callsec(root: Path, env: dict[str, str],
                          register_secret: Callable[[str], None]) -> AsyncIterator[CallsecProcess]:
    """``callsec run`` in a clean ``root`` with ``env``; once it stops, every code it sent is
    registered as a secret the leak checks look for."""
    clean_workdir(root)
    proc = CallsecProcess(root, env_overrides=env)
    await wait_no_other_callsec()
    await proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        for message in proc.outbox_messages():
            register_secret(code_from(message))


@dataclass
class Product:
    """The running ``callsec run`` and the logged-in agent's desk."""

    proc: CallsecProcess
    desk: Desk
    workdir: Path

    @property
    def sse_dir(self) -> Path:
        return self.workdir / "sse"


async def wait_no_other_callsec(timeout: float = 180.0) -> None:
    """Only one ``callsec run`` may listen on A's app ``callsec``: wait while another one does."""
    headers = {"Authorization": A.basic_auth}
    async with aiohttp.ClientSession(headers=headers) as session, asyncio.timeout(timeout):
        while True:
            async with session.get(f"{A.base_url}/ari/applications/callsec") as resp:
                if resp.status == 404:
                    return
            await asyncio.sleep(1.0)


@asynccontextmanager
async def running_product(name: str, env: dict[str, str] | None = None) -> AsyncIterator[Product]:
    """A fresh work dir, ``callsec run`` with :data:`CAPTURE_ENV` (+ ``env``), agent anna on
    agent100 logged in over the real API."""
    root = workdir(name)
    clean_workdir(root)
    proc = CallsecProcess(root, env_overrides={**CAPTURE_ENV, **(env or {})})
    await wait_no_other_callsec()
    await proc.start()
    try:
        secret = add_agent(proc)
        port = proc.env()["CALLSEC_WEB__PORT"]
        async with aiohttp.ClientSession() as session:
            desk = Desk(f"http://127.0.0.1:{port}", session)
            await desk.login(AGENT_USER, AGENT_PASSWORD, secret)
            yield Product(proc, desk, root)
    finally:
        proc.stop()
