"""Customers: blind index of the e-mail address (``customers.email_bi``, nullable, indexed).

A vCard without a UID is matched to an existing customer by a phone number's or the e-mail
address's blind index (re-importing it updates, never duplicates). A migration cannot see the
blind-index key: customers saved before this revision get their ``email_bi`` at their next
save; until then they are matched by phone only.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("email_bi", sa.LargeBinary(32), nullable=True))
        batch.create_index("ix_customers_email_bi", ["email_bi"])


def downgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.drop_index("ix_customers_email_bi")
        batch.drop_column("email_bi")
