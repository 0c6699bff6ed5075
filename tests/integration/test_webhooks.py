"""Signed webhooks against a real aiohttp receiver on loopback, with a real SQLite store:
signatures verify with the shared secret and the timestamp; a receiver that is down, slow or
answering 500 gets the events again, in order per call; after the last try the event is a
dead letter in the database, and ``callsec webhooks retry`` (the real CLI) delivers it once
the receiver is fixed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select

from callsec_ari.config_check import load_settings
from callsec_ari.core.errors import ConfigError
from callsec_ari.store.context import Store, init_keys, open_store
from callsec_ari.store.models import AuditRow
from callsec_ari.verification.delivery.retry import RetryPolicy
from callsec_ari.webhooks.sender import Target
from callsec_ari.webhooks.service import WebhookService
from callsec_ari.webhooks.signing import verify
from callsec_ari.webhooks.store import DeadLetters

SECRET = "webhook-shared-secret-0123"
FAST = RetryPolicy(timeout_seconds=0.5, retries=9, budget_seconds=20.0, backoff_seconds=0.1,
                   jitter=0.5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Receiver:
    """What a receiver saw: (headers, raw body) per request; ``mode`` steers its answer."""

    port: int
    mode: str = "ok"  # ok | fail (500) | slow-once
    seen: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    slow_done: bool = False
    got: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.seen.append((dict(request.headers), raw))
        self.got.set()
        if self.mode == "fail":
            return web.Response(status=500)
        if self.mode == "slow-once" and not self.slow_done:
            self.slow_done = True
            await asyncio.sleep(1.5)
        return web.Response(status=204)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(raw) for _, raw in self.seen]

    async def wait_count(self, count: int, timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.seen) < count:
                self.got.clear()
                await self.got.wait()


@asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[Receiver]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", receiver.port).start()
    try:
        yield receiver
    finally:
        await runner.cleanup()


def write_config(tmp_path: Path, url: str = "http://127.0.0.1:9/hook", extra: str = "") -> Path:
    config = tmp_path / "callsec.conf"
    config.write_text(f"[database]\nurl = sqlite:///{tmp_path / 'callsec.db'}\n"
                      f"[crypto]\nkeyring_dir = {tmp_path / 'keys'}\n"
                      f"[status]\nsocket =\n"
                      f"[webhooks]\nurls = {url}\nsecret_file = {tmp_path / 'secret'}\n"
                      f"max_attempts = 3\ntimeout_seconds = 1\nbackoff_seconds = 0.1\n{extra}",
                      encoding="utf-8")
    (tmp_path / "secret").write_text(SECRET + "\n", encoding="utf-8")
    return config


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    settings = load_settings(write_config(tmp_path), env={})
    init_keys(settings)
    opened = open_store(settings)
    try:
        yield opened
    finally:
        opened.close()


@asynccontextmanager
async def running(service: WebhookService) -> AsyncIterator[WebhookService]:
    async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as tg:
        task = tg.create_task(service.run(session))
        try:
            yield service
        finally:
            task.cancel()


def service_for(store: Store, url: str, policy: RetryPolicy = FAST,
                queue_size: int = 100) -> WebhookService:
    return WebhookService([Target(url, SECRET.encode())], policy, DeadLetters(store.db, store.keys),
                          audit=store.audit, queue_size=queue_size)


async def test_events_are_signed_with_the_shared_secret_and_a_timestamp(store: Store) -> None:
    async with serving(Receiver(free_port())) as receiver:
        async with running(service_for(store, receiver.url)) as service:
            service.emit("capture.started", "1733.1", {"capture_id": "CP-00aa"})
            service.emit("capture.finished", "1733.1", {"capture_id": "CP-00aa",
                                                        "result": "captured"})
            await receiver.wait_count(2)
    for headers, raw in receiver.seen:
        header = headers["Callsec-Signature"]
        assert verify(SECRET.encode(), header, raw)
        stamp, mac = (p.split("=", 1)[1] for p in header.split(","))
        expected = hmac.new(SECRET.encode(), f"{stamp}.".encode() + raw, hashlib.sha256)
        assert hmac.compare_digest(mac, expected.hexdigest())  # the documented recipe
        assert not verify(b"another-secret-of-16+", header, raw)
        assert not verify(SECRET.encode(), header, raw, now=int(stamp) + 301)  # replay window
        assert not verify(SECRET.encode(), header, raw + b" ")
        assert headers["Callsec-Event-Id"] == json.loads(raw)["id"]
    assert [b["type"] for b in receiver.bodies()] == ["capture.started", "capture.finished"]
    assert receiver.bodies()[1]["data"] == {"capture_id": "CP-00aa", "result": "captured"}


async def test_a_receiver_that_is_down_gets_the_events_in_order_when_it_comes_back(
        store: Store) -> None:
    receiver = Receiver(free_port())
    async with running(service_for(store, receiver.url)) as service:
        for n in range(4):
            service.emit("capture.field_completed", "1733.2", {"attempt": n})
        service.emit("capture.field_completed", "1733.3", {"attempt": 9})
        await asyncio.sleep(1.0)  # connection refused, retried
        assert receiver.seen == []
        async with serving(receiver):
            await receiver.wait_count(5)
    bodies = receiver.bodies()
    assert [b["data"]["attempt"] for b in bodies if b["call_id"] == "1733.2"] == [0, 1, 2, 3]
    assert DeadLetters(store.db, store.keys).list() == []


async def test_a_slow_receiver_is_tried_again_with_the_same_event_id(store: Store) -> None:
    async with serving(Receiver(free_port(), mode="slow-once")) as receiver:
        async with running(service_for(store, receiver.url)) as service:
            service.emit("verification.finished", "1733.4", {"result": "verified"})
            service.emit("capture.started", "1733.4", {"capture_id": "CP-01"})
            await receiver.wait_count(3)
            await asyncio.sleep(0.3)
    ids = [b["id"] for b in receiver.bodies()]
    assert ids[0] == ids[1] != ids[2]  # the first attempt timed out: the same event again
    assert [b["type"] for b in receiver.bodies()][1:] == ["verification.finished",
                                                           "capture.started"]
    assert DeadLetters(store.db, store.keys).list() == []


async def test_500_is_retried_then_dead_lettered_and_webhooks_retry_delivers_it(
        store: Store, tmp_path: Path) -> None:
    policy = RetryPolicy(timeout_seconds=1, retries=2, budget_seconds=10, backoff_seconds=0.1)
    async with serving(Receiver(free_port(), mode="fail")) as receiver:
        write_config(tmp_path, receiver.url)
        async with running(service_for(store, receiver.url, policy)) as service:
            service.emit("capture.started", "1733.5", {"capture_id": "CP-02"})
            service.emit("capture.finished", "1733.5", {"capture_id": "CP-02",
                                                        "result": "captured"})
            await receiver.wait_count(3)
            async with asyncio.timeout(10):
                while len(DeadLetters(store.db, store.keys).list()) < 2:
                    await asyncio.sleep(0.1)
        assert len(receiver.seen) == 3  # three tries of the first; the second waits behind it
        first, second = DeadLetters(store.db, store.keys).list()
        assert (first.attempts, first.reason, first.http_status) == (3, "http_status", 500)
        assert (second.attempts, second.reason) == (0, "after_dead_letter")
        assert json.loads(second.body)["data"] == {"capture_id": "CP-02", "result": "captured"}
        on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("callsec.db*"))
        assert b"CP-02" not in on_disk  # the body is encrypted at rest
        with store.db.session() as s:
            actions = list(s.scalars(select(AuditRow.action)))
        assert actions.count("webhook.dead_letter") == 2
        listed = await cli(tmp_path, "webhooks", "list", "--json")
        assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [
            first.id, second.id]
        failing = await cli(tmp_path, "webhooks", "retry", "--all")
        assert failing.returncode == 1, failing.stderr
        receiver.mode = "ok"
        receiver.seen.clear()
        fixed = await cli(tmp_path, "webhooks", "retry", "--all")
        assert fixed.returncode == 0, fixed.stderr
    assert [b["id"] for b in receiver.bodies()] == [first.event_id, second.event_id]
    assert all(verify(SECRET.encode(), h["Callsec-Signature"], raw) for h, raw in receiver.seen)
    assert DeadLetters(store.db, store.keys).list() == []
    with store.db.session() as s:
        assert "webhook.retry" in list(s.scalars(select(AuditRow.action)))


async def test_a_full_queue_makes_a_dead_letter_at_once_without_blocking(store: Store) -> None:
    service = service_for(store, "http://127.0.0.1:9/hook", queue_size=1)
    service.emit("capture.started", "1733.6", {})
    service.emit("capture.finished", "1733.6", {})  # no worker runs: the queue is full
    async with asyncio.timeout(5):
        while not DeadLetters(store.db, store.keys).list():
            await asyncio.sleep(0.05)
    assert [d.reason for d in DeadLetters(store.db, store.keys).list()] == ["queue_full"]


async def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``callsec`` CLI in a child process (the receiver keeps answering meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callsec_ari", "-c", str(tmp_path / "callsec.conf"), *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    return subprocess.CompletedProcess(args, proc.returncode or 0, out.decode(), err.decode())


def test_every_url_needs_a_secret(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "secret").write_text("short\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="secret"):
        load_settings(config, env={})
    two = write_config(tmp_path, "http://127.0.0.1:9/a, http://127.0.0.1:9/b",
                       extra="secrets = only-one-secret-here-1234\n")
    with pytest.raises(ConfigError, match="one per URL"):
        load_settings(two, env={})


def test_migration_0009_matches_the_model_and_downgrades(tmp_path: Path) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import inspect

    from callsec_ari.store.db import alembic_config, current_revision, open_url
    from callsec_ari.store.models import Base

    db = open_url(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        with db.engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            assert "webhook_dead_letters" in inspect(conn).get_table_names()
        assert [d for d in diffs if "webhook_dead_letters" in repr(d)] == []
        cfg = alembic_config()
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0008")
        assert current_revision(db) == "0008"
        with db.engine.connect() as conn:
            assert "webhook_dead_letters" not in inspect(conn).get_table_names()
    finally:
        db.dispose()
