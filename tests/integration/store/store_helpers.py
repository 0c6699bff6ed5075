"""Helpers for the store's integration tests: raw byte scans of the database."""

from __future__ import annotations

import glob
import shutil
import subprocess
from pathlib import Path

from sqlalchemy import make_url

from callsec_ari.store.customers import CustomerData, Name, Phone
from callsec_ari.store.db import Database


def pg_dump_path() -> str:
    found = shutil.which("pg_dump") or next(iter(sorted(glob.glob(
        "/usr/lib/postgresql/*/bin/pg_dump"))), None)
    assert found, "pg_dump not installed"
    return found


def raw_database_bytes(db: Database) -> bytes:
    """Everything the database holds on disk (SQLite file + WAL) or in a ``pg_dump``."""
    path = db.sqlite_path
    if path is not None:
        out = b""
        for suffix in ("", "-wal", "-shm"):
            part = Path(str(path) + suffix)
            if part.exists():
                out += part.read_bytes()
        return out
    url = make_url(db.engine.url.render_as_string(hide_password=False))
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return subprocess.run([pg_dump_path(), "--data-only", "--inserts", libpq],
                          check=True, capture_output=True, timeout=120).stdout


def encodings(value: str) -> list[bytes]:
    """The forms a leaked value could take on disk."""
    forms = {value.encode("utf-8"), value.encode("utf-16-le"), value.encode("latin-1", "ignore")}
    return [f for f in forms if len(f) >= 4]


def jurgen(**changes: object) -> CustomerData:
    base: dict[str, object] = {
        "name": Name("Jürgen Müllerstein", "Jürgen", "Müllerstein"),
        "phones": (Phone("+49 151 23456789", "mobile"), Phone("030 98765432", "landline")),
        "email": "juergen.muellerstein@example.org", "language": "de",
        "preferred_method": "sms", "customer_number": "31415926"}
    base.update(changes)
    return CustomerData(**base)  # type: ignore[arg-type]
