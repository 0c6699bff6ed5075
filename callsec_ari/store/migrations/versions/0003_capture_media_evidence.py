"""Captures: the signed leak evidence of a talk-through capture (``media_evidence``, nullable
JSON: ``{"capture_id", "evidence", "alg", "signature"}``; NULL for bridge-mode captures).

Revision ID: 0003
Revises: 0002
Create Date: 2024-07-01 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("captures") as batch:
        batch.add_column(sa.Column("media_evidence", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("captures") as batch:
        batch.drop_column("media_evidence")
