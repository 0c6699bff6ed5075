"""Encrypted store: keys, customers, phones, customer numbers, verifications, captures, vault,
hash-chained audit log.

Revision ID: 0001
Revises:
Create Date: 2024-06-01 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table(
        "keys",
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("owner_kind", sa.String(16), nullable=False),
        sa.Column("owner_id", sa.String(64), nullable=False),
        sa.Column("kek_version", sa.Integer(), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("shredded", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("shredded_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_keys"),
        sa.UniqueConstraint("owner_kind", "owner_id", name="uq_keys_owner_kind_owner_id"),
    )
    op.create_index("ix_keys_kek_version", "keys", ["kek_version"])
    op.create_table(
        "customers",
        sa.Column("ref", sa.String(32), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("name_enc", sa.LargeBinary(), nullable=True),
        sa.Column("email_enc", sa.LargeBinary(), nullable=True),
        sa.Column("totp_secret_enc", sa.LargeBinary(), nullable=True),
        sa.Column("customer_number_enc", sa.LargeBinary(), nullable=True),
        sa.Column("uid_enc", sa.LargeBinary(), nullable=True),
        sa.Column("uid_bi", sa.LargeBinary(32), nullable=True),
        sa.Column("language", sa.String(2), nullable=False),
        sa.Column("preferred_method", sa.String(8), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("erased_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["key_id"], ["keys.key_id"], name="fk_customers_key_id_keys"),
        sa.PrimaryKeyConstraint("ref", name="pk_customers"),
        sa.UniqueConstraint("uid_bi", name="uq_customers_uid_bi"),
    )
    op.create_table(
        "customer_phones",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("customer_ref", sa.String(32), nullable=False),
        sa.Column("bi", sa.LargeBinary(32), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("receives_codes", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("number_enc", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["customer_ref"], ["customers.ref"], ondelete="CASCADE",
                                name="fk_customer_phones_customer_ref_customers"),
        sa.PrimaryKeyConstraint("id", name="pk_customer_phones"),
    )
    op.create_index("ix_customer_phones_bi", "customer_phones", ["bi"])
    op.create_index("ix_customer_phones_customer_ref", "customer_phones", ["customer_ref"])
    op.create_table(
        "customer_numbers",
        sa.Column("bi", sa.LargeBinary(32), nullable=False),
        sa.Column("customer_ref", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(["customer_ref"], ["customers.ref"], ondelete="CASCADE",
                                name="fk_customer_numbers_customer_ref_customers"),
        sa.PrimaryKeyConstraint("bi", name="pk_customer_numbers"),
        sa.UniqueConstraint("customer_ref", name="uq_customer_numbers_customer_ref"),
    )
    _create_call_tables()
    _create_audit_tables()


def _create_call_tables() -> None:
    op.create_table(
        "verifications",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("customer_ref", sa.String(32), nullable=True),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("result", sa.String(20), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sends", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("caller_enc", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["customer_ref"], ["customers.ref"], ondelete="SET NULL",
                                name="fk_verifications_customer_ref_customers"),
        sa.ForeignKeyConstraint(["key_id"], ["keys.key_id"], name="fk_verifications_key_id_keys"),
        sa.PrimaryKeyConstraint("id", name="pk_verifications"),
    )
    op.create_index("ix_verifications_call_id", "verifications", ["call_id"])
    op.create_index("ix_verifications_customer_ref", "verifications", ["customer_ref"])
    op.create_index("ix_verifications_started_at", "verifications", ["started_at"])
    op.create_table(
        "captures",
        sa.Column("capture_id", sa.String(40), nullable=False),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("customer_ref", sa.String(32), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("result", sa.String(16), nullable=True),
        sa.Column("masked", sa.JSON(), nullable=False),
        sa.Column("vault_refs", sa.JSON(), nullable=False),
        sa.Column("gateway_token", sa.String(255), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["customer_ref"], ["customers.ref"], ondelete="SET NULL",
                                name="fk_captures_customer_ref_customers"),
        sa.PrimaryKeyConstraint("capture_id", name="pk_captures"),
    )
    op.create_index("ix_captures_call_id", "captures", ["call_id"])
    op.create_index("ix_captures_customer_ref", "captures", ["customer_ref"])
    op.create_index("ix_captures_created_at", "captures", ["created_at"])
    op.create_table(
        "vault_items",
        sa.Column("ref", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("customer_ref", sa.String(32), nullable=True),
        sa.Column("call_id", sa.String(64), nullable=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("value_enc", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["customer_ref"], ["customers.ref"], ondelete="SET NULL",
                                name="fk_vault_items_customer_ref_customers"),
        sa.ForeignKeyConstraint(["key_id"], ["keys.key_id"], name="fk_vault_items_key_id_keys"),
        sa.PrimaryKeyConstraint("ref", name="pk_vault_items"),
    )
    op.create_index("ix_vault_items_call_id", "vault_items", ["call_id"])
    op.create_index("ix_vault_items_customer_ref", "vault_items", ["customer_ref"])
    op.create_index("ix_vault_items_created_at", "vault_items", ["created_at"])


def _create_audit_tables() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_ts", "audit_log", ["ts"])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("base_seq", sa.Integer(), nullable=False),
        sa.Column("base_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS, "base_seq": 0,
                           "base_hash": GENESIS}])


def downgrade() -> None:
    for table in ("audit_head", "audit_log", "vault_items", "captures", "verifications",
                  "customer_numbers", "customer_phones", "customers", "keys"):
        op.drop_table(table)
