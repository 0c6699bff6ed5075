"""Webhooks: dead letters (events a URL did not take after the last try).

The body is the masked event as sent (never a code, PAN or phone number), encrypted under the
call's data key (approval and "not me" events name a customer ref, amount and payee); the
URL's secret is never stored.
``delivered_at`` is set when ``callsec webhooks retry`` re-sends the event.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_dead_letters",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("call_id", sa.String(128), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("key_id", sa.String(32), sa.ForeignKey("keys.key_id"), nullable=False),
        sa.Column("body_enc", sa.LargeBinary(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_webhook_dead_letters_event_id", "webhook_dead_letters", ["event_id"])
    op.create_index("ix_webhook_dead_letters_delivered_at", "webhook_dead_letters",
                    ["delivered_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_dead_letters_delivered_at", "webhook_dead_letters")
    op.drop_index("ix_webhook_dead_letters_event_id", "webhook_dead_letters")
    op.drop_table("webhook_dead_letters")
