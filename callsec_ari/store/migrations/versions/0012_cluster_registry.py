"""Cluster: call registry and node heartbeats.

``cluster_nodes`` (:mod:`callsec_ari.store.cluster`): one row per callsec node, its advertised
URL, Stasis app and last heartbeat. ``cluster_calls``: one row per live call with its owning
node, flow, state, channel, agent endpoint, opaque customer reference and running
capture's id (never a digit).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_nodes",
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("advertise_url", sa.String(255), nullable=False),
        sa.Column("stasis_app", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("node_id", name="pk_cluster_nodes"),
    )
    op.create_table(
        "cluster_calls",
        sa.Column("call_id", sa.String(128), nullable=False),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("flow", sa.String(32), nullable=False),
        sa.Column("state", sa.String(64), nullable=False),
        sa.Column("channel_id", sa.String(128), nullable=False),
        sa.Column("agent_endpoint", sa.String(128), nullable=True),
        sa.Column("customer_ref", sa.String(64), nullable=True),
        sa.Column("capture_id", sa.String(64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("call_id", name="pk_cluster_calls"),
    )
    op.create_index("ix_cluster_calls_node_id", "cluster_calls", ["node_id"])
    op.create_index("ix_cluster_calls_capture_id", "cluster_calls", ["capture_id"])


def downgrade() -> None:
    op.drop_index("ix_cluster_calls_capture_id", "cluster_calls")
    op.drop_index("ix_cluster_calls_node_id", "cluster_calls")
    op.drop_table("cluster_calls")
    op.drop_table("cluster_nodes")
