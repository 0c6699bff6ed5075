"""Migrations 0002_access and 0006_staff_login create exactly the tables the access models
declare."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

import callsec_ari.access.models  # noqa: F401  (registers the tables on Base)
from callsec_ari.store.db import alembic_config, current_revision, open_url
from callsec_ari.store.models import Base

ACCESS_TABLES = {"users", "sessions", "login_throttle"}


def test_access_migration_matches_the_models_and_downgrades(tmp_path: Path) -> None:
    db = open_url(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        with db.engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            assert ACCESS_TABLES <= set(inspect(conn).get_table_names())
        assert [d for d in diffs if any(t in repr(d) for t in ACCESS_TABLES)] == []
        cfg = alembic_config()
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0001")
        assert current_revision(db) == "0001"
        with db.engine.connect() as conn:
            assert not ACCESS_TABLES & set(inspect(conn).get_table_names())
    finally:
        db.dispose()
