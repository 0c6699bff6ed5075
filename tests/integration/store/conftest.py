"""Fixtures for the store's integration tests: a real database per test (SQLite file, and
PostgreSQL when ``CALLSEC_TEST_PG_URL`` is set: start one with ``tools/pg.sh start``)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from callsec_ari.config import Settings
from callsec_ari.config_check import load_settings
from callsec_ari.store.context import Store, init_keys, open_store

PG_ENV = "CALLSEC_TEST_PG_URL"


def _postgres_database() -> Iterator[str]:
    base = os.environ.get(PG_ENV)
    if not base:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} is not set in CI (export it from tools/pg.sh start)")
        pytest.skip(f"{PG_ENV} not set; run: export {PG_ENV}=$(tools/pg.sh start)")
    name = "callsec_t_" + secrets.token_hex(6)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: SQLite (temp file) and PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'callsec.db'}"
    else:
        yield from _postgres_database()


def write_config(tmp_path: Path, db_url: str, extra: str = "") -> Path:
    path = tmp_path / "callsec.conf"
    path.write_text(
        "[database]\n"
        f"url = {db_url}\n"
        "[crypto]\n"
        f"keyring_dir = {tmp_path / 'keys'}\n"
        "[verification]\n"
        "default_region = DE\n" + extra,
        encoding="utf-8")
    return path


@pytest.fixture
def config_path(tmp_path: Path, db_url: str) -> Path:
    """A config whose database and key ring were set up by ``callsec keys init`` (keys are
    created only on purpose; ``write_config`` alone gives a database without keys)."""
    path = write_config(tmp_path, db_url)
    init_keys(load_settings(path, env={}))
    return path


@pytest.fixture
def settings(config_path: Path) -> Settings:
    return load_settings(config_path, env={})


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    st = open_store(settings)
    try:
        yield st
    finally:
        st.close()
