"""Payment approvals: signed approval records (``approvals``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("approval_id", sa.String(40), nullable=False),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("customer_ref", sa.String(64), nullable=True),
        sa.Column("amount", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("payee", sa.String(280), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("result", sa.String(16), nullable=True),
        sa.Column("reason", sa.String(40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("signature", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("approval_id", name="pk_approvals"),
    )
    op.create_index("ix_approvals_call_id", "approvals", ["call_id"])
    op.create_index("ix_approvals_customer_ref", "approvals", ["customer_ref"])


def downgrade() -> None:
    op.drop_index("ix_approvals_customer_ref", "approvals")
    op.drop_index("ix_approvals_call_id", "approvals")
    op.drop_table("approvals")
