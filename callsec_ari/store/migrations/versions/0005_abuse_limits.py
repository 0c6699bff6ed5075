"""Abuse limits shared by every node: rate-limit counters, wrong-code failures (the lockout's
input) and the last TOTP step per customer (replay protection). Rows are keyed by a keyed hash
of the subject (``customer:<ref>``, ``caller:<number>``): no phone number in plaintext.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "abuse_counters",
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("subject", "kind", "window_start", name="pk_abuse_counters"),
    )
    op.create_table(
        "abuse_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_abuse_failures"),
    )
    op.create_index("ix_abuse_failures_subject", "abuse_failures", ["subject"])
    op.create_table(
        "totp_steps",
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("subject", name="pk_totp_steps"),
    )


def downgrade() -> None:
    op.drop_table("totp_steps")
    op.drop_index("ix_abuse_failures_subject", table_name="abuse_failures")
    op.drop_table("abuse_failures")
    op.drop_table("abuse_counters")
