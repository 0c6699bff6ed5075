"""Which dead node's app a node takes over (#16.4): the first alive node by id, never its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from callsec_ari.ari.takeover import choose
from callsec_ari.store.cluster import Node

NOW = datetime(2026, 12, 7, 17, 0, tzinfo=UTC)


def node(node_id: str, age: float, stopped: bool = False) -> Node:
    beat = NOW - timedelta(seconds=age)
    return Node(node_id=node_id, advertise_url="http://x", stasis_app=f"callsec-{node_id}",
                started_at=beat, heartbeat_at=beat, stopped_at=beat if stopped else None)


def alive(n: Node) -> bool:
    return n.alive(NOW, 5.0)


NODES = [node("node1", 9.0), node("node2", 0.5), node("node3", 0.2), node("node4", 0.1, True)]


def test_the_first_alive_node_takes_over_every_dead_one() -> None:
    chosen = choose(NODES, me="node2", own_apps={"callsec-node2"}, held=(), now_alive=alive)
    assert [n.node_id for n in chosen] == ["node1", "node4"]  # stopped counts as dead


def test_other_survivors_leave_it_alone() -> None:
    assert choose(NODES, me="node3", own_apps={"callsec-node3"}, held=(), now_alive=alive) == []


def test_an_app_already_held_or_shared_is_not_taken_again() -> None:
    held = choose(NODES, me="node2", own_apps={"callsec-node2"}, held={"callsec-node1"},
                  now_alive=alive)
    assert [n.node_id for n in held] == ["node4"]
    same_app = [node("node1", 9.0), node("node2", 0.5)]
    assert choose(same_app, me="node2", own_apps={"callsec-node1"}, held=(),
                  now_alive=alive) == []


def test_no_alive_node_no_takeover() -> None:
    assert choose([node("node1", 9.0)], me="node2", own_apps=(), held=(), now_alive=alive) == []
