"""Database engine, sessions and migrations.

SQLite (default ``var/callsec.db``, relative to the working directory) runs with WAL,
``synchronous=NORMAL``, foreign keys, ``secure_delete`` (erased pages are zeroed), a busy
timeout, a 32 MiB page cache and 256 MiB of memory-mapped I/O; PostgreSQL is reached with
``postgresql+psycopg://``. Migrations are alembic scripts shipped in
:mod:`callsec_ari.store.migrations`, run from code (no ``alembic.ini`` on disk).

All work happens in short transactions (:meth:`Database.session`): commit on success, rollback
on any error, so no half-written row survives.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, CursorResult, Result, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from callsec_ari.config import Settings
from callsec_ari.core.errors import ConfigError
from callsec_ari.store.errors import DatabaseUnavailable
from callsec_ari.store.group import GroupCommit

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

#: A Session or a Core Connection: both execute statements in one transaction.
Executor = Session | Connection

MIGRATIONS = Path(__file__).with_name("migrations")


def describe(url: URL) -> str:
    """Where the database is, for messages: ``host:port/db`` or the SQLite file; no password."""
    if url.get_backend_name() == "sqlite":
        return f"sqlite file {url.database or ':memory:'}"
    host = url.host or "localhost"
    port = f":{url.port}" if url.port else ""
    return f"{host}{port}/{url.database or ''}"


def _sqlite_pragmas(busy_timeout_ms: int) -> Any:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON",
                       "secure_delete=ON", f"busy_timeout={int(busy_timeout_ms)}",
                       "cache_size=-32768", "mmap_size=268435456"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()
    return on_connect


def resolve_url(raw: str, base_dir: Path = Path("."), *, create: bool = True) -> URL:
    """The URL with a relative SQLite path made absolute (against ``base_dir``); a missing
    SQLite file is created (0600) only with ``create``, else refused naming the path."""
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError("not a database URL", section="database", key="url") from None
    if url.get_backend_name() == "sqlite":
        name = url.database or ""
        if name and name != ":memory:" and not name.startswith("file:"):
            path = Path(name)
            if not path.is_absolute():
                path = base_dir / path
            if not create and not path.exists():
                raise ConfigError(f"the SQLite database {path} does not exist (check the url "
                                  "and the configuration file used; a new database is set up "
                                  "with `callsec keys init`)", section="database", key="url")
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():  # ciphertext only, but still nobody else's business
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
            url = url.set(database=str(path))
    elif url.get_backend_name() == "postgresql" and url.get_driver_name() != "psycopg":
        raise ConfigError("use postgresql+psycopg://", section="database", key="url")
    return url


def make_engine(url: URL, *, busy_timeout_ms: int = 5000,
                connect_timeout_seconds: float = 5.0) -> Engine:
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_ms))
        return engine
    if url.get_backend_name() != "postgresql":
        raise ConfigError("only sqlite and postgresql+psycopg URLs are supported",
                          section="database", key="url")
    # No pool_pre_ping (a round trip per transaction): a dropped connection fails one
    # request with DatabaseUnavailable and SQLAlchemy then replaces the pooled connections.
    return create_engine(url, pool_size=10, max_overflow=10,
                         connect_args={"connect_timeout": max(1, int(connect_timeout_seconds))})


@dataclass
class Database:
    """The engine and its transactions. On SQLite, one process's writers take turns on an
    in-process gate (``_gate``) instead of in SQLite's busy handler: that handler sleeps 1, 2,
    5, 10 ... 100 ms between tries whether or not the lock was freed meanwhile, which under
    load made a caller's next prompt wait on a sleep, not on a write (``make bench``, #17).
    Other processes (the CLI) still meet the busy timeout.

    :meth:`offload` runs a coroutine's store work: on SQLite on the event loop itself, else in
    a worker thread. SQLite is a library in this process: a statement costs microseconds of
    this process's CPU, and a worker thread only adds waiting for the GIL while the event
    loop runs (each SQLite call gives the GIL up and waits to get it back): a look-up next
    to one busy thread cost 2.7x its CPU and 9x its time (#17). PostgreSQL's round trips
    leave the loop free in a thread."""

    engine: Engine
    sessions: sessionmaker[Session]
    busy_timeout_seconds: float = 5.0
    _gate: threading.RLock | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.engine.dialect.name == "sqlite":
            self._gate = threading.RLock()

    async def offload(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """``fn(*args, **kwargs)`` for a coroutine: at once on SQLite, in a thread else."""
        if self._gate is not None:
            return fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """This thread's turn to write (SQLite; at once elsewhere): ``DatabaseUnavailable``
        (busy) after the busy timeout, as SQLite's own lock would have answered."""
        gate = self._gate
        if gate is None:
            yield
            return
        if not gate.acquire(timeout=self.busy_timeout_seconds):
            raise DatabaseUnavailable(self.where, "busy (locked by another writer)")
        try:
            yield
        finally:
            gate.release()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def where(self) -> str:
        return describe(self.engine.url)

    @property
    def sqlite_path(self) -> Path | None:
        if self.dialect != "sqlite" or not self.engine.url.database:
            return None
        return Path(self.engine.url.database)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One short transaction: commit on success, rollback on error."""
        try:
            with self._turn(), self.sessions.begin() as session:
                yield session
        except (OperationalError, InterfaceError) as exc:
            if _is_unreachable(exc):
                raise DatabaseUnavailable(self.where, _reason(exc)) from None
            raise

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """One short Core transaction (hot paths: vault, look-ups, audit); commit or rollback."""
        try:
            with self._turn(), self.engine.begin() as conn:
                yield conn
        except (OperationalError, InterfaceError) as exc:
            if _is_unreachable(exc):
                raise DatabaseUnavailable(self.where, _reason(exc)) from None
            raise

    @contextmanager
    def read(self, *, write: bool = False) -> Iterator[Connection]:
        """An autocommit connection for look-ups and (``write``) single-statement writes: no
        BEGIN/COMMIT round trips. Each statement sees committed data, as it would in a READ
        COMMITTED transaction, and is atomic on its own."""
        try:
            turn = self._turn() if write else nullcontext()
            with turn, self.engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT") as conn:
                yield conn
        except (OperationalError, InterfaceError) as exc:
            if _is_unreachable(exc):
                raise DatabaseUnavailable(self.where, _reason(exc)) from None
            raise

    def check(self) -> None:
        """Connect once; :class:`DatabaseUnavailable` naming the host if that fails."""
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except DBAPIError:
            raise DatabaseUnavailable(self.where) from None

    def dispose(self) -> None:
        self.engine.dispose()


class GroupInsert:
    """Rows of concurrent writers (threads). On SQLite they go in together: one INSERT,
    committed once (:class:`~callsec_ari.store.group.GroupCommit` groups them; SQLite has one
    writer at a time anyway). A row alone is one autocommit statement, one round trip; a group
    is one transaction (autocommit executemany would go row by row); a failed group is
    retried row by row, so a row's error reaches its writer.

    On PostgreSQL each row is its own autocommit INSERT on its own pooled connection, at once:
    the server runs concurrent writers side by side and folds their commits into one WAL flush
    itself, while a group made each writer wait for the one before (two writers: 1,851
    stores/s grouped, 2,390-2,598 direct, ``bench/store_bench.py``, #17)."""

    def __init__(self, db: Database, statement: Any) -> None:
        self._db, self._statement = db, statement
        self._group: GroupCommit[dict[str, Any], bool] = GroupCommit(self._write)
        self._direct = db.dialect == "postgresql"

    def insert(self, row: dict[str, Any]) -> None:
        if self._direct:
            self._write([row])
        else:
            self._group.submit(row)

    def _write(self, rows: list[dict[str, Any]]) -> list[bool]:
        if len(rows) == 1:
            with self._db.read(write=True) as conn:
                conn.execute(self._statement, rows[0])
        else:
            with self._db.connect() as conn:
                conn.execute(self._statement, rows)
        return [True] * len(rows)


def _reason(exc: DBAPIError) -> str:
    return "busy (locked by another writer)" if "locked" in str(exc.orig).lower() \
        else "unreachable"


def _is_unreachable(exc: DBAPIError) -> bool:
    return bool(exc.connection_invalidated) or isinstance(exc, InterfaceError) or \
        "connect" in str(exc.orig).lower() or "locked" in str(exc.orig).lower()


def upsert_insert(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """The INSERT for ``table`` of the ``dialect`` named (both have ``on_conflict_do_update``,
    ``on_conflict_do_nothing`` and ``excluded``)."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def dialect_name(executor: Executor) -> str:
    bind = executor.get_bind() if isinstance(executor, Session) else executor
    return bind.dialect.name


def rowcount(result: Result[Any]) -> int:
    """Rows touched by an UPDATE/DELETE executed through a Session."""
    return int(cast("CursorResult[Any]", result).rowcount or 0)


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    return cfg


def upgrade(db: Database, revision: str = "head") -> None:
    """Run the migrations up to ``revision`` in one transaction per step."""
    cfg = alembic_config()
    try:
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except OperationalError as exc:
        if _is_unreachable(exc):
            raise DatabaseUnavailable(db.where) from None
        raise


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def open_url(raw_url: str, *, upgrade_schema: bool = True, base_dir: Path = Path("."),
             busy_timeout_ms: int = 5000, connect_timeout_seconds: float = 5.0,
             create: bool = True) -> Database:
    url = resolve_url(raw_url, base_dir, create=create)
    engine = make_engine(url, busy_timeout_ms=busy_timeout_ms,
                         connect_timeout_seconds=connect_timeout_seconds)
    db = Database(engine, sessionmaker(engine, expire_on_commit=False),
                  busy_timeout_seconds=busy_timeout_ms / 1000)
    db.check()
    if upgrade_schema:
        upgrade(db)
    log.debug("database open at %s", db.where)
    return db


def open_database(settings: Settings, *, upgrade: bool = True, create: bool = True
                  ) -> Database:
    """Open ``[database] url`` (relative SQLite paths against ``settings.base_dir``), check it
    is reachable and, with ``upgrade``, migrate it to the newest schema."""
    d = settings.database
    return open_url(str(d.url), upgrade_schema=upgrade, base_dir=settings.base_dir,
                    busy_timeout_ms=d.busy_timeout_ms,
                    connect_timeout_seconds=d.connect_timeout_seconds, create=create)
