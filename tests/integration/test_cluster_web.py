"""Any node serves every call (#16.3): two web nodes on one database. Node n1 runs the calls
(``web_env``'s dispatcher); node n2 runs none. n2 lists n1's calls from the call registry to
the users who may see them, forwards a command for one of them to n1 (signed node-to-node
request) and returns n1's status and JSON; n1 refuses forged, replayed and misdirected node
requests (the attack: a client posing as a node)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from callsec_ari.runtime.bus import EventBus
from callsec_ari.runtime.cluster import ClusterNode
from callsec_ari.runtime.dispatcher import Dispatcher
from callsec_ari.runtime.executor import CallExecutor
from callsec_ari.store.cluster import ClusterStore
from callsec_ari.web.app import build_web_app
from callsec_ari.web.cluster import NODE_HEADER, Forwarder, NodeAuth
from callsec_ari.web.deps import WebDeps
from tests.integration.web_env import FakeCaptures, WebEnv, web_env

pytestmark = pytest.mark.asyncio
SECRET = b"shared-cluster-key-0123456789"


@dataclass
class Pair:
    one: WebEnv  # node n1: runs C-100 (anna's, team blue) and C-102 (carla's, team red)
    two: TestClient[Any, Any]  # node n2
    two_captures: FakeCaptures
    two_deps: WebDeps
    clusters: tuple[ClusterNode, ClusterNode]

    async def login(self, name: str) -> dict[str, str]:
        return await self.one.login(name)  # one sessions table: valid on every node


def _node(env: WebEnv, node_id: str, url: str) -> ClusterNode:
    settings = dataclasses.replace(env.settings.cluster, node_id=node_id, advertise_url=url,
                                   heartbeat_seconds=0.1)
    return ClusterNode(ClusterStore(env.store.db), settings, "callsec")


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    async with two_nodes(tmp_path) as nodes:
        yield nodes


@asynccontextmanager
async def two_nodes(tmp_path: Path, db_url: str = "") -> AsyncIterator[Pair]:
    """Node n1 (``web_env``: its dispatcher runs the calls) and node n2, on one database."""
    async with web_env(tmp_path, db_url=db_url) as one:
        bus = EventBus()
        dispatcher = Dispatcher(CallExecutor())
        runner = asyncio.create_task(dispatcher.run())
        captures = FakeCaptures(bus)
        deps = WebDeps(web=one.settings.web, auth=one.auth, users=one.users,
                       audit=one.store.audit, db=one.store.db, calls=dispatcher, bus=bus,
                       captures=captures)
        deps.sse_heartbeat_seconds = 0.5
        two: TestClient[Any, Any] = TestClient(TestServer(build_web_app(deps),
                                                          host="127.0.0.1"))
        await two.start_server()
        n1 = _node(one, "n1", str(one.client.make_url("/")).rstrip("/"))
        n2 = _node(one, "n2", str(two.make_url("/")).rstrip("/"))
        for node, node_deps in ((n1, one.deps), (n2, deps)):
            node_deps.cluster = node
            node_deps.forwarder = Forwarder(node, NodeAuth(SECRET, node.node_id),
                                            dead_after=5.0)
        for call in one.dispatcher:
            n1.call_started(call)  # as the dispatcher's observer does
        tasks = [asyncio.create_task(n.run()) for n in (n1, n2)]
        try:
            for _ in range(100):
                if len(n2.remote_calls()) == 2 and n2.node("n1") is not None:
                    break
                await asyncio.sleep(0.05)
            yield Pair(one, two, captures, deps, (n1, n2))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for node_deps in (one.deps, deps):
                assert node_deps.forwarder is not None
                await node_deps.forwarder.close()
            await two.close()
            dispatcher.stop()
            await runner


async def test_each_node_lists_every_call_the_user_may_see(pair: Pair) -> None:
    for name, expected in (("anna", ["C-100"]), ("sven", ["C-100"]), ("rita", ["C-102"]),
                           ("ben", [])):
        headers = await pair.login(name)
        for client in (pair.one.client, pair.two):
            resp = await client.get("/api/v1/calls", headers=headers)
            calls = (await resp.json())["calls"]
            assert [c["call_id"] for c in calls] == expected, (name, client)
            assert all(c["node"] == "n1" for c in calls)
    resp = await pair.two.get("/api/v1/calls", headers=await pair.login("anna"))
    (remote,) = (await resp.json())["calls"]
    assert (remote["agent"], remote["agent_user"], remote["team"], remote["state"]) == \
        ("agent100", "anna", "blue", "bridged")


async def test_a_command_for_another_nodes_call_reaches_it_and_its_answer_comes_back(
        pair: Pair) -> None:
    headers = await pair.login("anna")
    resp = await pair.two.post("/api/v1/calls/C-100/captures", headers=headers,
                               json={"fields": ["card_number", "expiry"]})
    assert resp.status == 201, await resp.text()
    assert resp.headers[NODE_HEADER] == "n1"
    capture_id = (await resp.json())["capture_id"]
    assert pair.one.captures.requests == [("C-100", ("card_number", "expiry"), "user:anna")]
    assert pair.two_captures.requests == []  # n2 did not run it
    resp = await pair.two.post(f"/api/v1/calls/C-100/captures/{capture_id}/fields/expiry",
                               headers=headers, json={"action": "rerequest"})
    assert resp.status in (200, 202), await resp.text()
    assert pair.one.captures.controls == [(capture_id, "expiry", "rerequest")]
    resp = await pair.two.delete(f"/api/v1/calls/C-100/captures/{capture_id}",
                                 headers=await pair.login("sven"))
    assert resp.status in (200, 202, 204), await resp.text()
    assert pair.one.captures.infos[capture_id].state == "cancelled"
    # an error answer comes back unchanged too
    resp = await pair.two.delete("/api/v1/calls/C-100/captures/CAP-404", headers=headers)
    assert (resp.status, (await resp.json())["error_id"]) == (404, "not_found")


async def test_another_users_call_on_another_node_answers_as_if_it_did_not_exist(
        pair: Pair) -> None:
    headers = await pair.login("carla")  # team red: anna's C-100 is not hers to see
    for path in ("/api/v1/calls/C-100/captures", "/api/v1/calls/NOPE/captures"):
        resp = await pair.two.post(path, headers=headers, json={"fields": ["card_number"]})
        assert (resp.status, (await resp.json())["error_id"]) == (404, "not_found")
        assert NODE_HEADER not in resp.headers  # refused on n2, never forwarded
    assert pair.one.captures.requests == []


async def test_forged_replayed_and_misdirected_node_requests_are_refused(pair: Pair) -> None:
    headers = await pair.login("anna")
    path, body = "/api/v1/calls/C-100/captures", b'{"fields": ["card_number"]}'
    json_headers = {**headers, "Content-Type": "application/json"}

    async def send(signed: dict[str, str], data: bytes = body) -> tuple[int, str]:
        resp = await pair.one.client.post(path, headers={**json_headers, **signed}, data=data)
        return resp.status, (await resp.json())["error_id"]

    forged = NodeAuth(b"not-the-cluster-key-0123456", "n2")
    assert await send(forged.sign("n1", "POST", path, body)) == (401, "node_request_refused")
    assert await send({NODE_HEADER: "n2"}) == (401, "node_request_refused")
    genuine = NodeAuth(SECRET, "n2")
    assert await send(genuine.sign("n3", "POST", path, body)) == (401, "node_request_refused")
    assert await send(genuine.sign("n1", "POST", path, body), b'{"fields": ["cvv"]}') == \
        (401, "node_request_refused")  # body changed on the way
    old = genuine.sign("n1", "POST", path, body, now=time.time() - 120)
    assert await send(old) == (401, "node_request_refused")
    assert pair.one.captures.requests == []
    signed = genuine.sign("n1", "POST", path, body)
    resp = await pair.one.client.post(path, headers={**json_headers, **signed}, data=body)
    assert resp.status == 201  # the genuine one, once
    assert await send(signed) == (401, "node_request_refused")  # replayed
    assert len(pair.one.captures.requests) == 1


async def test_without_a_cluster_secret_a_remote_call_is_not_forwarded(pair: Pair) -> None:
    n2 = pair.clusters[1]
    for app_deps in _deps_of(pair.two):
        app_deps.forwarder = Forwarder(n2, NodeAuth(b"", "n2"), dead_after=5.0)
    resp = await pair.two.post("/api/v1/calls/C-100/captures", headers=await pair.login("anna"),
                               json={"fields": ["card_number"]})
    assert (resp.status, (await resp.json())["error_id"]) == (503, "node_unavailable")
    assert pair.one.captures.requests == []


def _deps_of(client: TestClient[Any, Any]) -> list[WebDeps]:
    from callsec_ari.web.guard import DEPS

    assert isinstance(client.server, TestServer)
    return [client.server.app[DEPS]]


async def test_a_call_started_on_the_other_node_is_found_before_the_next_heartbeat(
        pair: Pair) -> None:
    call = pair.one.start_call("C-200", "agent100")
    pair.clusters[0].call_started(call)
    for _ in range(100):
        if ClusterStore(pair.one.store.db).call("C-200") is not None:
            break
        await asyncio.sleep(0.02)
    resp = await pair.two.post("/api/v1/calls/C-200/captures", headers=await pair.login("anna"),
                               json={"fields": ["iban"]})
    assert resp.status == 201, await resp.text()
    assert pair.one.captures.requests[-1][0] == "C-200"
