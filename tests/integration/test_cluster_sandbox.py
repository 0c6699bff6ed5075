"""Two callsec nodes on one PostgreSQL against the sandbox (issue #16): real SIP calls from B.

Node 1 runs ARI app ``callsec-node1`` (HTTP :8080), node 2 ``callsec-node2`` (:8081); A's
numbers 1600 (verify) and 2600 (connect to agent100, ``policy=risk`` without a code here) reach
them through the product wrappers with ``CALLSEC_APP=callsec-node1&callsec-node2``: the
dialplan deals calls to the nodes in turn and skips a node that is down
(``dialplan/extensions_callsec.conf``, ``[callsec-node]``). The tests run in file order; the
last one kills node 1.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pyotp
import pytest
from sqlalchemy import create_engine, text

from tests.harness.agent import AgentPhones
from tests.harness.callsec_proc import REPO, CallsecProcess, code_from
from tests.harness.carrier import Carrier, CarrierCall
from tests.harness.sandbox import Sandbox
from tests.integration.capture_checks import find_leaks
from tests.integration.capture_env import (
    AGENT,
    AGENT_PASSWORD,
    Desk,
    SseRecorder,
    expiry,
    visa,
)
from tests.integration.store.conftest import _postgres_database

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres]
APPS = ("callsec-node1", "callsec-node2")
WRONG_CODES = 4  # lockout_wrong_codes in this module
_numbers = itertools.count(300)


def fresh_number(prefix: str = "+49153") -> str:
    return f"{prefix}{os.getpid() % 1000:03d}{next(_numbers):05d}"


@dataclass
class Cluster:
    nodes: tuple[CallsecProcess, CallsecProcess]
    desks: tuple[Desk, Desk]
    db_url: str

    def node_of(self, app: str) -> CallsecProcess:
        return self.nodes[APPS.index(app)]


def node_env(index: int, db_url: str, shared: dict[str, str]) -> dict[str, str]:
    root = REPO / "var" / "test" / f"cluster-node{index}"
    return {**shared,
            "CALLSEC_DATABASE__URL": db_url,
            "CALLSEC_ARI__APP": APPS[index - 1],
            "CALLSEC_CLUSTER__NODE_ID": f"node{index}",
            "CALLSEC_CLUSTER__ADVERTISE_URL": f"http://127.0.0.1:{8079 + index}",
            "CALLSEC_WEB__PORT": str(8079 + index),
            "CALLSEC_STATUS__SOCKET": str(root / "callsec.ctl")}


def add_supervisor(proc: CallsecProcess, name: str) -> str:
    """A supervisor who takes calls at agent100: a supervisor sees and captures on calls
    of their own endpoint (``access/roles.py``: captures.request is ``own``)."""
    result = proc.cli("users", "add", name, "--role", "supervisor", "--endpoint", AGENT,
                      "--password-stdin", stdin=AGENT_PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    uri = next(line for line in result.stdout.splitlines() if line.startswith("otpauth://"))
    return str(pyotp.parse_uri(uri).secret)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    yield from _postgres_database()


@pytest.fixture(scope="module")
async def cluster(sandbox: Sandbox, pg_url: str) -> AsyncIterator[Cluster]:
    roots = [REPO / "var" / "test" / f"cluster-node{i}" for i in (1, 2)]
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)
    shared = {
        "CALLSEC_CRYPTO__KEYRING_DIR": str(roots[0] / "keys"),
        "CALLSEC_SMS__OUTBOX_DIR": str(roots[0] / "outbox"),
        "CALLSEC_AGI__ENABLED": "no",
        "CALLSEC_POLICY_RISK__REQUIRE_CODE": "never",
        "CALLSEC_VERIFICATION__LOCKOUT_WRONG_CODES": str(WRONG_CODES),
        "CALLSEC_VERIFICATION__FIRST_DIGIT_TIMEOUT_SECONDS": "4",
        "CALLSEC_VERIFICATION__INTER_DIGIT_TIMEOUT_SECONDS": "3",
        "CALLSEC_CLUSTER__HEARTBEAT_SECONDS": "0.5",
        "CALLSEC_CLUSTER__DEAD_AFTER_SECONDS": "2.5",
        "CALLSEC_CLUSTER__SECRET": "cluster-test-secret-0123456789",
    }
    nodes = tuple(CallsecProcess(root, env_overrides=node_env(i, pg_url, shared), app=APPS[i - 1])
                  for i, root in zip((1, 2), roots, strict=True))
    node1, node2 = nodes
    try:
        await node1.start()
        # the user on agent100 is a supervisor who takes calls: signed in once, on node 2; the
        # session lives in the database, so node 1 takes the same bearer token
        secret = add_supervisor(node1, "bert")
        node2.keys_ready = True  # same database and key ring as node 1
        await node2.start()
        async with aiohttp.ClientSession() as session:
            desk2 = Desk("http://127.0.0.1:8081", session)
            await desk2.login("bert", AGENT_PASSWORD, secret)
            desks = (Desk("http://127.0.0.1:8080", session, desk2.token), desk2)
            yield Cluster(nodes, desks, pg_url)  # type: ignore[arg-type]
    finally:
        for node in nodes:
            node.stop()


async def caller_channel(ari_a: aiohttp.ClientSession, caller: str,
                         timeout: float = 10.0) -> dict[str, Any]:
    """A's channel of the call from ``caller`` (wherever it is in the dialplan)."""
    async with asyncio.timeout(timeout):
        while True:
            async with ari_a.get("/ari/channels") as resp:
                for channel in await resp.json():
                    if channel["caller"]["number"] == caller and \
                            not channel["name"].startswith("Local/"):
                        return dict(channel)
            await asyncio.sleep(0.1)


async def var(ari_a: aiohttp.ClientSession, channel_id: str, name: str) -> str:
    async with ari_a.get(f"/ari/channels/{channel_id}/variable", params={"variable": name}) as r:
        return str((await r.json())["value"]) if r.status == 200 else ""


async def wait_var(ari_a: aiohttp.ClientSession, channel_id: str, name: str,
                   timeout: float = 20.0) -> str:
    async with asyncio.timeout(timeout):
        while not (value := await var(ari_a, channel_id, name)):
            await asyncio.sleep(0.2)
    return value


async def call_on(carrier: Carrier, ari_a: aiohttp.ClientSession, exten: str, caller: str,
                  app: str | None = None) -> tuple[CarrierCall, str, str]:
    """Call ``exten`` from ``caller``; when ``app`` is given, hang up and call again until the
    dialplan deals the call to that node. (call, A's channel id, the node's app)."""
    for _ in range(3):
        call = await carrier.call(exten, caller_id=caller)
        await call.wait_up(timeout=15)
        channel = str((await caller_channel(ari_a, caller))["id"])
        node = await wait_var(ari_a, channel, "CALLSEC_NODE", timeout=10)
        if app is None or node == app:
            return call, channel, node
        await call.hangup()
        await asyncio.sleep(0.3)
    raise AssertionError(f"three calls in a row did not reach {app}")


async def test_twenty_concurrent_calls_are_spread_over_both_nodes(
        cluster: Cluster, carrier: Carrier, ari_a: aiohttp.ClientSession) -> None:
    callers = [fresh_number() for _ in range(20)]
    calls = await asyncio.gather(*(carrier.call("1600", caller_id=c) for c in callers))
    try:
        await asyncio.gather(*(call.wait_up(timeout=20) for call in calls))
        channels = [str((await caller_channel(ari_a, c))["id"]) for c in callers]
        results = await asyncio.gather(*(wait_var(ari_a, ch, "CALLSEC_RESULT", timeout=30)
                                         for ch in channels))
        nodes = [await var(ari_a, ch, "CALLSEC_NODE") for ch in channels]
    finally:
        await asyncio.gather(*(call.hangup() for call in calls), return_exceptions=True)
    assert results == ["unknown_caller"] * 20  # every call was served by a node
    counts = {app: nodes.count(app) for app in APPS}
    assert counts[APPS[0]] >= 5 and counts[APPS[1]] >= 5 and sum(counts.values()) == 20, counts
    for app, node in zip(APPS, cluster.nodes, strict=True):  # the node's own log has its calls
        log = node.log_text()
        assert all(ch in log for ch, n in zip(channels, nodes, strict=True) if n == app)


async def test_lockout_counts_wrong_codes_across_nodes(
        cluster: Cluster, carrier: Carrier, ari_a: aiohttp.ClientSession) -> None:
    """Two wrong codes on one node, two on the other: the fourth locks, as on one node."""
    node1 = cluster.nodes[0]
    mobile = fresh_number("+49157")
    node1.add_customer(name="Zwei Knoten", mobile=mobile)
    seen: list[str] = []
    for last in (False, True):
        before = len(node1.outbox_messages())
        call, channel, node = await call_on(carrier, ari_a, "1600", mobile)
        seen.append(node)
        code = code_from(await node1.wait_message(before + 1))
        wrong = str((int(code[0]) + 1) % 10) + code[1:]
        for _ in range(2):
            await call.send_dtmf(wrong + "#", between_ms=80, duration_ms=80)
            await asyncio.sleep(0.6)
        if last:  # the fourth wrong code in all, the second on this node: locked
            assert await wait_var(ari_a, channel, "CALLSEC_RESULT") == "locked"
        else:
            assert await var(ari_a, channel, "CALLSEC_RESULT") == ""  # still collecting
        await call.hangup()
        await asyncio.sleep(0.5)
    assert sorted(seen) == sorted(APPS)  # one call on each node
    call, channel, _node = await call_on(carrier, ari_a, "1600", mobile)
    assert await wait_var(ari_a, channel, "CALLSEC_RESULT") == "locked"
    await call.hangup()


async def bridge(ari_a: aiohttp.ClientSession, bridge_id: str) -> dict[str, Any] | None:
    async with ari_a.get(f"/ari/bridges/{bridge_id}") as resp:
        return None if resp.status == 404 else dict(await resp.json())


async def test_supervisor_on_node2_captures_a_card_on_a_node1_call(
        cluster: Cluster, carrier: Carrier, agents: AgentPhones, ari_a: aiohttp.ClientSession,
        register_secret: Any) -> None:
    """The command is forwarded to node 1, node 1's masked progress reaches node 2's stream."""
    node1 = cluster.nodes[0]
    desk1, desk2 = cluster.desks
    card, exp, cvv = visa(), expiry(3), "7391"[:3]
    for value in (card, card[:-4]):
        register_secret(value)
    before = agents.seen(AGENT)
    call, call_id, _ = await call_on(carrier, ari_a, "2600", fresh_number(), APPS[0])
    agent = await agents.wait_ringing(AGENT, timeout=20, known=before)
    await desk1.wait_state(call_id, "connected")
    async with asyncio.timeout(10):  # node 2 lists node 1's call from the registry
        while True:
            status, listing = await desk2.call("GET", "/api/v1/calls")
            items = listing["calls"] if isinstance(listing, dict) else listing
            if status == 200 and any(c["call_id"] == call_id for c in items):
                break
            await asyncio.sleep(0.3)
    sse = SseRecorder(desk2, call_id, node1.workdir / "sse" / f"{call_id}-node2.sse")
    reader = asyncio.create_task(sse.run())
    try:
        capture_id = await desk2.request_capture(call_id, ["card_number", "expiry", "cvv"])
        for name, keys in (("card_number", card + "#"), ("expiry", exp), ("cvv", cvv + "#")):
            await sse.wait_stage(capture_id, "field_started", field=name)
            await asyncio.sleep(0.4)
            await call.send_dtmf(keys, between_ms=120, duration_ms=120)
        finished = await sse.wait_stage(capture_id, "finished", timeout=30)
    finally:
        reader.cancel()
    assert finished["result"] == "captured" and finished["last4"] == card[-4:]
    digits = [e for e in sse.capture_events(capture_id) if e.get("stage") == "digit"
              and e.get("field") == "card_number"]
    assert [e["count"] for e in digits] == list(range(1, len(card) + 1))
    stored = await desk2.wait_capture(capture_id, "captured")
    assert set(stored["vault_refs"]) == {"card_number", "expiry"}
    await call.hangup()
    assert agent.dtmf == []
    engine = create_engine(cluster.db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT count(*) FROM captures WHERE call_id = :c"),
                                {"c": call_id}).scalar_one()
            items = conn.execute(text("SELECT count(*) FROM vault_items WHERE call_id = :c"),
                                 {"c": call_id}).scalar_one()
    finally:
        engine.dispose()
    assert (rows, items) == (1, 2)  # stored once: one capture, card and expiry
    body = b"".join(e.__repr__().encode() for e in sse.events)
    assert find_leaks([card, card[:-4]], {"node 2 stream": body}) == []


async def test_sigkill_of_node1_mid_capture_and_mid_verification(
        cluster: Cluster, carrier: Carrier, agents: AgentPhones, ari_a: aiohttp.ClientSession,
        register_secret: Any) -> None:
    node1, node2 = cluster.nodes
    desk1 = cluster.desks[0]
    typed = visa()[:8]
    register_secret(typed)
    # a connected call on node 1, its agent in a card capture, eight digits typed
    before = agents.seen(AGENT)
    captured, call_id, _ = await call_on(carrier, ari_a, "2600", fresh_number(), APPS[0])
    await agents.wait_ringing(AGENT, timeout=20, known=before)
    await desk1.wait_state(call_id, "connected")
    sse = SseRecorder(desk1, call_id, node1.workdir / "sse" / f"{call_id}.sse")
    reader = asyncio.create_task(sse.run())
    try:
        capture_id = await desk1.request_capture(call_id, ["card_number", "expiry", "cvv"])
        await sse.wait_stage(capture_id, "field_started", field="card_number")
        await asyncio.sleep(0.4)
        await captured.send_dtmf(typed, between_ms=100, duration_ms=100)
        await sse.wait(lambda e: e.get("stage") == "digit" and e.get("count") == len(typed))
    finally:
        reader.cancel()
    # a caller of node 1 at the code prompt
    mobile = fresh_number("+49159")
    node1.add_customer(name="Mitten Drin", mobile=mobile)
    sent = len(node1.outbox_messages())
    verifying, verify_channel, _ = await call_on(carrier, ari_a, "1600", mobile, APPS[0])
    await node1.wait_message(sent + 1)

    node1.kill()  # SIGKILL
    killed = time.monotonic()
    async with asyncio.timeout(10):  # the capture ends, the caller is back with the agent
        while await bridge(ari_a, f"callsec-capture-{call_id}") is not None:
            await asyncio.sleep(0.2)
        while True:
            back = await bridge(ari_a, f"callsec-call-{call_id}")
            if back is not None and sorted(back["channels"]) == sorted(
                    [call_id, f"{call_id}-agent"]):
                break
            await asyncio.sleep(0.2)
        # the verification caller is node 2's now: apology, then its verification again
        while f"[{verify_channel}] restarting flow verify" not in node2.log_text():
            await asyncio.sleep(0.2)
    adopted = time.monotonic() - killed
    assert adopted < 10
    await node1.wait_message(sent + 2, timeout=20)  # a new code, sent by node 2
    assert agents.latest(AGENT).dtmf == []

    engine = create_engine(cluster.db_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT result, vault_refs, masked FROM captures "
                                    "WHERE capture_id = :c"), {"c": capture_id}).one()
            items = conn.execute(text("SELECT count(*) FROM vault_items WHERE call_id = :c"),
                                 {"c": call_id}).scalar_one()
            dump = "\n".join(str(r) for r in conn.execute(text(
                "SELECT * FROM captures WHERE call_id = :c"), {"c": call_id}))
    finally:
        engine.dispose()
    assert row.result == "cancelled" and items == 0
    assert find_leaks([typed], {"database": dump.encode(),
                                "node 2 log": node2.log_file.read_bytes()}) == []
    await verifying.hangup()
    await captured.hangup()
    audit = node2.cli("audit", "verify")
    assert audit.returncode == 0, audit.stdout + audit.stderr

    # new calls are served by node 2 without anyone doing anything
    for _ in range(2):
        caller = fresh_number()
        call, channel, _node = await call_on(carrier, ari_a, "1600", caller)
        assert await wait_var(ari_a, channel, "CALLSEC_RESULT") == "unknown_caller"
        assert channel in node2.log_text()
        await call.hangup()
