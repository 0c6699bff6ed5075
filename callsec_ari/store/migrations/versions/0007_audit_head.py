"""Audit: authenticated head and anchor (``audit_head.mac``, nullable).

``mac`` is an HMAC under the audit key over the head (seq, hash) and the anchor (base_seq,
base_hash), so a head moved back to an older entry (truncation) or a moved anchor fails
``callsec audit verify``. A migration cannot see the key: an upgraded database keeps
``mac`` NULL ("unsealed") until the first append or ``callsec audit verify`` / ``audit head``
after the upgrade seals it. Entries written from then on carry the format version in their
hash, so a MAC stripped later (set back to NULL) is told from a database not sealed yet.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_head") as batch:
        batch.add_column(sa.Column("mac", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_head") as batch:
        batch.drop_column("mac")
