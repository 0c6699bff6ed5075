"""A running web layer for tests: real SQLite store in a temp dir, real users (scrypt, TOTP),
a real dispatcher holding fake active calls, and the aiohttp app on a loopback port.

The clock is controllable: every login or fresh-MFA check needs an unused TOTP time step, so
:meth:`WebEnv.code` moves the clock one step forward and returns that step's code.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from callsec_ari.access import credentials as cred
from callsec_ari.access.auth import Auth
from callsec_ari.access.users import UserStore
from callsec_ari.capture.protocol import CaptureInfo
from callsec_ari.config import Settings
from callsec_ari.config_check import load_settings
from callsec_ari.core.commands import Command, Publish
from callsec_ari.core.errors import NotFound
from callsec_ari.core.events import CallStarted, Event
from callsec_ari.core.ports import CallContext, CallHandle
from callsec_ari.runtime.bus import EventBus
from callsec_ari.runtime.dispatcher import Dispatcher
from callsec_ari.runtime.executor import CallExecutor
from callsec_ari.store.context import Store, init_keys, open_store
from callsec_ari.verification.delivery.base import LatencyStats
from callsec_ari.web.app import build_web_app
from callsec_ari.web.deps import WebDeps

PASSWORD = "correct horse battery staple"

#: name -> (role, endpoint, team)
STAFF: dict[str, tuple[str, str | None, str | None]] = {
    "anna": ("agent", "agent100", "blue"),
    "ben": ("agent", "agent101", "blue"),
    "carla": ("agent", "agent102", "red"),
    "sven": ("supervisor", None, "blue"),
    "rita": ("supervisor", None, "red"),
    "adam": ("admin", None, None),
    "olga": ("auditor", None, None),
}
#: call id -> the endpoint it rang
CALLS = {"C-100": "agent100", "C-102": "agent102"}


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class HoldFlow:
    """A call that just stays active (the connect flow's "bridged" phase, for the desk)."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.events: list[Event] = []

    @property
    def done(self) -> bool:
        return False

    @property
    def state_name(self) -> str:
        return "BRIDGED"

    def handle(self, event: Event) -> list[Command]:
        self.events.append(event)
        return []


class FakeCaptures:
    """A stand-in for the capture feature: records requests, serves masked results."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.infos: dict[str, CaptureInfo] = {}
        self.requests: list[tuple[str, tuple[str, ...], str]] = []
        self.reveals: list[tuple[str, frozenset[str], str]] = []
        self.modes: list[str] = []
        self.controls: list[tuple[str, str, str]] = []
        self._ids = itertools.count(1)

    async def request(self, call: CallHandle, fields: Sequence[str], *, actor: str,
                      mode: str = "", optional: Sequence[str] = ()) -> str:
        capture_id = f"CAP-{next(self._ids)}"
        self.requests.append((call.call_id, tuple(fields), actor))
        self.modes.append(mode)
        self.infos[capture_id] = CaptureInfo(capture_id, call.call_id,
                                             call.context.agent_endpoint, "in_progress")
        return capture_id

    async def cancel(self, call: CallHandle, capture_id: str, *, actor: str) -> None:
        info = self.infos.get(capture_id)
        if info is None or info.call_id != call.call_id:
            raise NotFound("no such capture on this call")
        self.infos[capture_id] = CaptureInfo(capture_id, info.call_id, info.agent_endpoint,
                                             "cancelled")

    async def control_field(self, call: CallHandle, capture_id: str, field: str, action: str,
                            *, actor: str) -> None:
        info = self.infos.get(capture_id)
        if info is None or info.call_id != call.call_id:
            raise NotFound("no such capture on this call")
        self.controls.append((capture_id, field, action))

    async def get(self, capture_id: str) -> CaptureInfo:
        if capture_id not in self.infos:
            raise NotFound("no such capture", details={"capture_id": capture_id})
        return self.infos[capture_id]

    async def reveal(self, capture_id: str, *, kinds: frozenset[str], actor: str,
                     reason: str) -> dict[str, str]:
        self.reveals.append((capture_id, kinds, actor))
        return {"iban": "DE89370400440532013000"} if "iban" in kinds else {}

    def add(self, capture_id: str, call_id: str, endpoint: str) -> None:
        self.infos[capture_id] = CaptureInfo(capture_id, call_id, endpoint, "captured",
                                             {"fields": {"iban": {"valid": True}}})


class FakeApprovals:
    """The approval service's stand-in: AP-1 is an approval on anna's call C-100."""

    currencies = ("EUR", "USD")

    def __init__(self) -> None:
        self.requests: list[tuple[str, Any, str]] = []
        self.infos: dict[str, tuple[dict[str, Any], str | None]] = {
            "AP-1": ({"approval_id": "AP-1", "call_id": "C-100", "status": "approved"},
                     "agent100")}

    async def request(self, call: CallHandle, terms: Any, *, actor: str) -> str:
        self.requests.append((call.call_id, terms, actor))
        return f"AP-{len(self.infos) + 1}"

    async def get(self, approval_id: str) -> tuple[dict[str, Any], str | None]:
        if approval_id not in self.infos:
            raise NotFound("no such approval", details={"approval_id": approval_id})
        return self.infos[approval_id]


@dataclass
class FakeLink:
    server: str
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    client: Any = field(default_factory=lambda: SimpleNamespace(reconnects=0))


@dataclass
class WebEnv:
    settings: Settings
    config_path: Path
    store: Store
    users: UserStore
    auth: Auth
    clock: FakeClock
    dispatcher: Dispatcher
    bus: EventBus
    deps: WebDeps
    client: TestClient[Any, Any]
    captures: FakeCaptures
    links: list[FakeLink]
    secrets: dict[str, str]

    def code(self, name: str) -> str:
        """The next unused TOTP code of ``name`` (moves the clock one step on)."""
        self.clock.advance(cred.TOTP_INTERVAL)
        return cred.totp_code(self.secrets[name], cred.totp_step(self.clock.now))

    async def login(self, name: str) -> dict[str, str]:
        """Bearer headers for ``name``."""
        resp = await self.client.post("/api/v1/login", json={
            "username": name, "password": PASSWORD, "otp": self.code(name)})
        assert resp.status == 200, await resp.text()
        return {"Authorization": f"Bearer {(await resp.json())['token']}"}

    def start_call(self, call_id: str, endpoint: str | None, **data: Any) -> CallHandle:
        values = {"caller_masked": "+49…78", "verification": "verified", "server": "asterisk1",
                  **data}
        return self.dispatcher.start_call(call_id, HoldFlow(call_id), CallStarted(flow="connect"),
                                          CallContext(endpoints={"agent": endpoint} if endpoint
                                                      else {}, **values))


def write_config(tmp_path: Path, web: str = "", db_url: str = "") -> Path:
    path = tmp_path / "callsec.conf"
    db_url = db_url or f"sqlite:///{tmp_path / 'callsec.db'}"
    path.write_text(
        f"[database]\nurl = {db_url}\n"
        f"[crypto]\nkeyring_dir = {tmp_path / 'keys'}\n"
        "[web]\nport = 0\nmax_body_bytes = 4096\nlogin_max_failures = 5\n"
        "login_lockout_seconds = 900\nsession_ttl_seconds = 3600\n"
        "metrics_token = scrape-me-please\n" + web, encoding="utf-8")
    return path


@asynccontextmanager
async def web_env(tmp_path: Path, web: str = "", *, with_captures: bool = True,
                  db_url: str = "") -> AsyncIterator[WebEnv]:
    config_path = write_config(tmp_path, web, db_url)
    settings = load_settings(config_path, env={})
    init_keys(settings)  # keys are created only on purpose
    store = open_store(settings)
    clock = FakeClock()
    users = UserStore(store.db, store.keys, store.audit, clock=clock)
    auth = Auth(store.db, users, store.audit, settings.web,
                remote_key=store.keyring.blind_index_key(), clock=clock)
    secrets = {name: users.add(name, role, PASSWORD, endpoint=endpoint, team=team,
                               actor="test").secret
               for name, (role, endpoint, team) in STAFF.items()}
    bus = EventBus()
    executor = CallExecutor()
    executor.register(Publish, bus.handle)
    dispatcher = Dispatcher(executor)
    runner = asyncio.create_task(dispatcher.run())
    await asyncio.sleep(0)
    links = [FakeLink("asterisk1")]
    links[0].connected.set()
    latency = LatencyStats()
    captures = FakeCaptures(bus)
    deps = WebDeps(web=settings.web, auth=auth, users=users, audit=store.audit, db=store.db,
                   calls=dispatcher, bus=bus, ari=links, latency=latency,
                   captures=captures if with_captures else None, sse_heartbeat_seconds=0.5)
    deps.approvals = FakeApprovals() if with_captures else None
    client: TestClient[Any, Any] = TestClient(TestServer(build_web_app(deps), host="127.0.0.1"))
    await client.start_server()
    env = WebEnv(settings, config_path, store, users, auth, clock, dispatcher, bus, deps,
                 client, captures, links, secrets)
    for call_id, endpoint in CALLS.items():
        env.start_call(call_id, endpoint)
    try:
        yield env
    finally:
        await client.close()
        dispatcher.stop()
        await runner
        store.close()
