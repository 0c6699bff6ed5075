"""Caller confirmations: one-time links and replies, 'this is not me'.

Table ``confirmations`` (:mod:`callsec_ari.store.confirmations`): the SHA-256 of a link token
(never the token), the blind index of the number an SMS went to, the call, its reference and
the outcome. Single use: ``outcome`` is set once.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "confirmations",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(32), nullable=True),
        sa.Column("phone_bi", sa.LargeBinary(32), nullable=True),
        sa.Column("call_id", sa.String(128), nullable=False),
        sa.Column("call_ref", sa.String(16), nullable=False),
        sa.Column("customer_ref", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("approval_id", sa.String(40), nullable=True),
        sa.Column("terms", sa.String(300), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("answered_by", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_confirmations"),
        sa.UniqueConstraint("token_hash", name="uq_confirmations_token_hash"),
    )
    op.create_index("ix_confirmations_phone_bi", "confirmations", ["phone_bi"])
    op.create_index("ix_confirmations_call_id", "confirmations", ["call_id"])


def downgrade() -> None:
    op.drop_index("ix_confirmations_call_id", "confirmations")
    op.drop_index("ix_confirmations_phone_bi", "confirmations")
    op.drop_table("confirmations")
