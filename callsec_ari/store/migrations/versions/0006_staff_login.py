"""Staff login: per-account growing delays, aggregated refusals, session idle time.

``login_throttle`` replaces ``login_failures`` (one row per attempt, the user name verbatim:
a password typed into the name field was stored): one row per account or client address,
keyed by an HMAC, shared by every node. ``sessions.last_seen_at`` for the idle timeout.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(48), nullable=False),
        sa.Column("label", sa.String(96), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failure_at", TS, nullable=True),
        sa.Column("last_failure_at", TS, nullable=True),
        sa.Column("blocked_until", TS, nullable=True),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("reported_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_login_throttle"),
    )
    op.create_index("ix_login_throttle_updated_at", "login_throttle", ["updated_at"])
    op.drop_table("login_failures")
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("last_seen_at", TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("last_seen_at")
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("remote", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_login_failures"),
    )
    op.create_index("ix_login_failures_username", "login_failures", ["username"])
    op.create_index("ix_login_failures_remote", "login_failures", ["remote"])
    op.create_index("ix_login_failures_at", "login_failures", ["at"])
    op.drop_table("login_throttle")
