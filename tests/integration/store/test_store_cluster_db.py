"""The cluster registry on SQLite and PostgreSQL: heartbeats, dead nodes, the call registry,
and adoption that never hands one call to two survivors (each survivor its own connection,
as two callsec nodes would be)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from callsec_ari.store.cluster import ClusterCall, ClusterStore
from callsec_ari.store.context import Store

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def beat(cluster: ClusterStore, node: str, now: datetime) -> None:
    cluster.heartbeat(node, advertise_url=f"http://{node}:8080", stasis_app=f"callsec-{node}",
                      started_at=T0, now=now)


def dead(cluster: ClusterStore, now: datetime) -> list[str]:
    return [n.node_id for n in cluster.nodes() if not n.alive(now, 5.0)]


def test_heartbeats_tell_the_dead_from_the_living(store: Store) -> None:
    cluster = ClusterStore(store.db)
    beat(cluster, "n1", T0)
    beat(cluster, "n2", T0 + timedelta(seconds=8))
    beat(cluster, "n3", T0 + timedelta(seconds=9))
    cluster.stopped("n3", T0 + timedelta(seconds=9))
    now = T0 + timedelta(seconds=10)
    assert dead(cluster, now) == ["n1", "n3"]
    nodes = {n.node_id: n for n in cluster.nodes()}
    assert nodes["n2"].alive(now, 5.0) and not nodes["n1"].alive(now, 5.0)
    assert nodes["n2"].advertise_url == "http://n2:8080" and nodes["n2"].heartbeat_at == \
        T0 + timedelta(seconds=8)
    beat(cluster, "n3", now)  # restarted: alive again
    assert dead(cluster, now) == ["n1"]


def test_calls_are_registered_updated_and_finished(store: Store) -> None:
    cluster = ClusterStore(store.db)
    cluster.write_calls([ClusterCall("c1", "n1", "verification", "collecting", "chan-1"),
                         ClusterCall("c2", "n2", "connect", "bridged", "chan-2",
                                     agent_endpoint="PJSIP/agent100", customer_ref="C-1")],
                        [], T0)
    cluster.write_calls([ClusterCall("c1", "n1", "verification", "verified", "chan-1",
                                     customer_ref="C-7")], [], T0 + timedelta(seconds=1))
    c1 = cluster.call("c1")
    assert c1 is not None and (c1.state, c1.customer_ref, c1.updated_at) == \
        ("verified", "C-7", T0 + timedelta(seconds=1))
    assert [c.call_id for c in cluster.calls(node_id="n2")] == ["c2"]
    cluster.write_calls([ClusterCall("c2", "n2", "connect", "capturing", "chan-2",
                                     agent_endpoint="PJSIP/agent100", capture_id="CAP-1")],
                        [])
    owner = cluster.capture_owner("CAP-1")
    assert owner is not None and (owner.call_id, owner.node_id, owner.started_at) == \
        ("c2", "n2", T0)
    cluster.write_calls([], ["c1"])
    assert [c.call_id for c in cluster.calls()] == ["c2"] and cluster.call("c1") is None


def test_two_survivors_adopting_at_once_never_take_the_same_call(store: Store) -> None:
    cluster = ClusterStore(store.db)
    cluster.write_calls([ClusterCall(f"c{i}", "dead", "capture", "collecting", f"ch{i}")
                         for i in range(40)], [])

    def adopt(survivor: str) -> list[str]:
        own = ClusterStore(store.db)  # like another node: its own object and connection
        taken: list[str] = []
        for _ in range(5):
            taken += [c.call_id for c in own.adopt("dead", survivor)]
        return taken

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(adopt, ["s1", "s2"])
    assert sorted(first + second, key=lambda c: int(c[1:])) == [f"c{i}" for i in range(40)]
    assert not set(first) & set(second)
    owners = {c.call_id: c.node_id for c in cluster.calls()}
    assert all(owners[c] == "s1" for c in first) and all(owners[c] == "s2" for c in second)
    assert cluster.adopt("dead", "s1") == []


def test_no_digit_reaches_the_registry_columns(store: Store) -> None:
    cluster = ClusterStore(store.db)
    cluster.write_calls([ClusterCall("1733-abc.17", "n1", "capture", "collecting",
                                     "1733-abc.17", agent_endpoint="PJSIP/agent100",
                                     customer_ref="C-1")], [])
    with store.db.connect() as conn:
        columns = set(conn.execute(text("SELECT * FROM cluster_calls")).keys())
    assert columns == {"call_id", "node_id", "flow", "state", "channel_id", "agent_endpoint",
                       "customer_ref", "capture_id", "started_at", "updated_at"}
