"""Database opening, pragmas, migrations and unreachable servers."""

from __future__ import annotations

import importlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from callsec_ari.store.db import current_revision, head_revision, open_url
from callsec_ari.store.errors import DatabaseUnavailable
from callsec_ari.store.models import Base


def test_migrations_build_exactly_the_models(db_url: str) -> None:
    db = open_url(db_url)
    try:
        importlib.import_module("callsec_ari.access.models")  # later migrations' tables
        importlib.import_module("callsec_ari.store.abuse")  # 0005: abuse limits
        importlib.import_module("callsec_ari.store.approvals")  # 0010: approvals
        importlib.import_module("callsec_ari.store.confirmations")  # 0011: confirmations
        importlib.import_module("callsec_ari.store.cluster")  # 0012: cluster registry
        importlib.import_module("callsec_ari.webhooks.store")  # 0009: webhook dead letters
        assert current_revision(db) == head_revision()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    finally:
        db.dispose()


def test_upgrade_twice_is_harmless(db_url: str) -> None:
    open_url(db_url).dispose()
    db = open_url(db_url)
    assert current_revision(db) == head_revision()
    db.dispose()


def test_sqlite_runs_wal_with_foreign_keys_and_busy_timeout(tmp_path: object) -> None:
    db = open_url(f"sqlite:///{tmp_path}/x.db")
    try:
        with db.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 5000
            assert conn.execute(text("PRAGMA secure_delete")).scalar() == 1
    finally:
        db.dispose()


def test_unreachable_postgres_names_the_host_but_not_the_password() -> None:
    with pytest.raises(DatabaseUnavailable) as err:
        open_url("postgresql+psycopg://callsec:s3cr3t-pw@127.0.0.1:9/callsec",
                 connect_timeout_seconds=1)
    assert "127.0.0.1:9/callsec" in str(err.value)
    assert "s3cr3t-pw" not in str(err.value) and "s3cr3t-pw" not in repr(err.value.details)
    assert err.value.__cause__ is None and err.value.__suppress_context__
