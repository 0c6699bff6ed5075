"""Cluster state in the database: node heartbeats and the call registry.

``cluster_nodes`` holds one row per callsec node (its id, the URL other nodes reach its HTTP API
at, its Stasis app, when it started, its last heartbeat and when it stopped cleanly).
``cluster_calls`` holds one row per live call: the owning node, flow, state, channel, the agent
endpoint and the opaque customer reference -- never a digit, code or phone number.

Every node writes its own rows; a survivor takes a dead node's calls over with :meth:`adopt`,
atomic with several survivors (``FOR UPDATE SKIP LOCKED`` on PostgreSQL: two survivors never
adopt the same call; SQLite serialises writers). Blocking: call it from a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import DateTime, String, Table, delete, select, update
from sqlalchemy.engine import Row
from sqlalchemy.orm import Mapped, mapped_column

from callsec_ari.store.db import Database, upsert_insert
from callsec_ari.store.models import Base, as_utc, utcnow


class ClusterNodeRow(Base):
    """A callsec node; ``heartbeat_at`` older than ``dead_after_seconds``: dead."""

    __tablename__ = "cluster_nodes"
    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    advertise_url: Mapped[str] = mapped_column(String(255))
    stasis_app: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ClusterCallRow(Base):
    """A live call and the node that owns it (no digit, code or number in any column)."""

    __tablename__ = "cluster_calls"
    call_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(64), index=True)
    flow: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(64))
    channel_id: Mapped[str] = mapped_column(String(128))
    agent_endpoint: Mapped[str | None] = mapped_column(String(128))
    customer_ref: Mapped[str | None] = mapped_column(String(64))
    #: The running capture's id (commands by capture id reach the owning node).
    capture_id: Mapped[str | None] = mapped_column(String(64), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class Node:
    node_id: str
    advertise_url: str
    stasis_app: str
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None = None

    def alive(self, now: datetime, dead_after: float) -> bool:
        return self.stopped_at is None and now - self.heartbeat_at <= timedelta(
            seconds=dead_after)


@dataclass(frozen=True, slots=True)
class ClusterCall:
    call_id: str
    node_id: str
    flow: str
    state: str
    channel_id: str
    agent_endpoint: str | None = None
    customer_ref: str | None = None
    capture_id: str | None = None
    started_at: datetime | None = None
    updated_at: datetime | None = None


_NODES = cast(Table, ClusterNodeRow.__table__)
_CALLS = cast(Table, ClusterCallRow.__table__)


def _node(row: Row[Any]) -> Node:
    return Node(node_id=row.node_id, advertise_url=row.advertise_url,
                stasis_app=row.stasis_app, started_at=as_utc(row.started_at),
                heartbeat_at=as_utc(row.heartbeat_at),
                stopped_at=None if row.stopped_at is None else as_utc(row.stopped_at))


def _call(row: Row[Any]) -> ClusterCall:
    return ClusterCall(call_id=row.call_id, node_id=row.node_id, flow=row.flow,
                       state=row.state, channel_id=row.channel_id,
                       agent_endpoint=row.agent_endpoint, customer_ref=row.customer_ref,
                       capture_id=row.capture_id, started_at=as_utc(row.started_at),
                       updated_at=as_utc(row.updated_at))


_UPSERT_SET = ("node_id", "flow", "state", "channel_id", "agent_endpoint", "customer_ref",
               "capture_id", "updated_at")


def _upsert_statement(dialect: str) -> Any:
    """One INSERT ... ON CONFLICT DO UPDATE for a whole batch (executemany), built once per
    dialect: a registry write of 50 calls built 50 statements before."""
    insert = upsert_insert(dialect, _CALLS)
    return insert.on_conflict_do_update(
        index_elements=[_CALLS.c.call_id],
        set_={name: insert.excluded[name] for name in _UPSERT_SET})


_UPSERT_CALLS = {"postgresql": _upsert_statement("postgresql"),
                 "sqlite": _upsert_statement("sqlite")}


def _row(call: ClusterCall, now: datetime) -> dict[str, Any]:
    return {"call_id": call.call_id, "node_id": call.node_id, "flow": call.flow,
            "state": call.state, "channel_id": call.channel_id,
            "agent_endpoint": call.agent_endpoint, "customer_ref": call.customer_ref,
            "capture_id": call.capture_id, "started_at": call.started_at or now,
            "updated_at": now}


class ClusterStore:
    """Node heartbeats and the call registry on the callsec database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- nodes --------------------------------------------------------------------------
    def heartbeat(self, node_id: str, *, advertise_url: str, stasis_app: str,
                  started_at: datetime, now: datetime | None = None) -> None:
        """Insert or refresh this node's row (a restarted node is alive again)."""
        now = now or utcnow()
        with self.db.connect() as conn:
            insert = upsert_insert(conn.dialect.name, _NODES).values(
                node_id=node_id, advertise_url=advertise_url, stasis_app=stasis_app,
                started_at=started_at, heartbeat_at=now, stopped_at=None)
            conn.execute(insert.on_conflict_do_update(
                index_elements=[_NODES.c.node_id],
                set_={"advertise_url": advertise_url, "stasis_app": stasis_app,
                      "started_at": started_at, "heartbeat_at": now, "stopped_at": None}))

    def stopped(self, node_id: str, now: datetime | None = None) -> None:
        """A clean stop: the node is not alive any more (its calls left are adoptable)."""
        with self.db.connect() as conn:
            conn.execute(update(_NODES).where(_NODES.c.node_id == node_id)
                         .values(stopped_at=now or utcnow()))

    def nodes(self) -> list[Node]:
        with self.db.read() as conn:
            return [_node(r) for r in conn.execute(select(_NODES).order_by(_NODES.c.node_id))]

    def node(self, node_id: str) -> Node | None:
        with self.db.read() as conn:
            row = conn.execute(select(_NODES).where(_NODES.c.node_id == node_id)).first()
        return None if row is None else _node(row)

    # -- calls --------------------------------------------------------------------------
    def write_calls(self, live: list[ClusterCall], finished: list[str],
                    now: datetime | None = None) -> None:
        """One node's batch in one transaction: ``live`` registered or updated (upsert),
        ``finished`` removed."""
        now = now or utcnow()
        with self.db.connect() as conn:
            if live:
                conn.execute(_UPSERT_CALLS[conn.dialect.name],
                             [_row(call, now) for call in live])
            if finished:
                conn.execute(delete(_CALLS).where(_CALLS.c.call_id.in_(finished)))

    def calls(self, node_id: str | None = None, *,
              other_than: str | None = None) -> list[ClusterCall]:
        """The registry (``node_id``: that node's calls; ``other_than``: every other node's)."""
        query = select(_CALLS).order_by(_CALLS.c.started_at, _CALLS.c.call_id)
        if node_id is not None:
            query = query.where(_CALLS.c.node_id == node_id)
        if other_than is not None:
            query = query.where(_CALLS.c.node_id != other_than)
        with self.db.read() as conn:
            return [_call(r) for r in conn.execute(query)]

    def untouched(self, node_id: str, since: datetime) -> list[str]:
        """Ids of ``node_id``'s calls not written since ``since``."""
        query = select(_CALLS.c.call_id).where(_CALLS.c.node_id == node_id,
                                               _CALLS.c.updated_at < since)
        with self.db.read() as conn:
            return list(conn.scalars(query))

    def call(self, call_id: str) -> ClusterCall | None:
        with self.db.read() as conn:
            row = conn.execute(select(_CALLS).where(_CALLS.c.call_id == call_id)).first()
        return None if row is None else _call(row)

    def capture_owner(self, capture_id: str) -> ClusterCall | None:
        """The live call running capture ``capture_id``, if any node registered it."""
        with self.db.read() as conn:
            row = conn.execute(select(_CALLS).where(_CALLS.c.capture_id == capture_id)).first()
        return None if row is None else _call(row)

    def adopt(self, dead_node: str, survivor: str,
              now: datetime | None = None) -> list[ClusterCall]:
        """Move ``dead_node``'s calls to ``survivor`` and return them (as now owned by it).

        One transaction; on PostgreSQL the rows are locked ``FOR UPDATE SKIP LOCKED``, so a
        second survivor adopting at the same time gets none of the same calls."""
        now = now or utcnow()
        with self.db.connect() as conn:
            if conn.dialect.name != "postgresql":  # one statement: SQLite's write lock
                taken = conn.execute(update(_CALLS).where(_CALLS.c.node_id == dead_node)
                                     .values(node_id=survivor, updated_at=now)
                                     .returning(*_CALLS.c))
                return sorted((_call(r) for r in taken), key=lambda c: c.call_id)
            query = select(_CALLS.c.call_id).where(_CALLS.c.node_id == dead_node) \
                .with_for_update(skip_locked=True)
            ids = list(conn.scalars(query))
            if not ids:
                return []
            taken = conn.execute(update(_CALLS).where(_CALLS.c.call_id.in_(ids))
                                 .values(node_id=survivor, updated_at=now)
                                 .returning(*_CALLS.c))
            return sorted((_call(r) for r in taken), key=lambda c: c.call_id)
