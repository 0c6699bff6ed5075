"""Key custody: fingerprints of the KEK versions, blind-index and audit keys
(``key_fingerprints``: key check values, never key material; see ``store/custody.py``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_fingerprints",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", "version", name="pk_key_fingerprints"),
    )


def downgrade() -> None:
    op.drop_table("key_fingerprints")
