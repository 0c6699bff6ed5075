"""Data keys in the ``keys`` table: one per owner (customer, call of an unknown caller, or a
stand-alone vault item), wrapped by a KEK; rotation, retirement and crypto-shredding."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from callsec_ari.store import custody
from callsec_ari.store.crypto import DataKey, Envelope
from callsec_ari.store.db import Database, Executor, dialect_name, rowcount, upsert_insert
from callsec_ari.store.errors import KeyUnavailable
from callsec_ari.store.models import Base, DataKeyRow, utcnow

KEYS = Base.metadata.tables["keys"]
# Hot statements are built once (building a WHERE clause costs more than running it).
_BY_ID = select(KEYS.c.key_id, KEYS.c.kek_version, KEYS.c.wrapped).where(
    KEYS.c.key_id == bindparam("key_id"))
_BY_OWNER = select(KEYS.c.key_id, KEYS.c.kek_version, KEYS.c.wrapped).where(
    KEYS.c.owner_kind == bindparam("kind"), KEYS.c.owner_id == bindparam("owner"))


def _upsert(dialect: str) -> Any:
    """INSERT a key row; on an owner conflict a no-op update, so RETURNING always yields the
    row that won (ours, or a concurrent creator's)."""
    ins = upsert_insert(dialect, KEYS)
    return ins.on_conflict_do_update(
        index_elements=["owner_kind", "owner_id"], set_={"owner_id": ins.excluded.owner_id},
    ).returning(KEYS.c.key_id, KEYS.c.kek_version, KEYS.c.wrapped)


_UPSERT = {"postgresql": _upsert("postgresql"), "sqlite": _upsert("sqlite")}

log = logging.getLogger(__name__)

OWNER_KINDS = ("customer", "call", "item", "user")
#: How long an owner's unwrapped key is reused for *encrypting* new values (a call's captures,
#: a customer's vault items) without reading the key row again. Decryption always reads the
#: row, so shredding and KEK retirement take effect at once for reads; a write racing an
#: erasure in another process ends up as ciphertext nobody can read.
ENCRYPTION_KEY_TTL = 60.0
#: Seconds a KEK found matching the database's record is trusted for new data keys.
KEK_CHECK_SECONDS = 5.0
_ENCRYPTION_KEYS_MAX = 4096  # user: staff TOTP secrets (access)


@dataclass(frozen=True)
class RotationReport:
    new_version: int
    rewrapped: int
    retired: tuple[int, ...] = ()


class DataKeys:
    def __init__(self, db: Database, envelope: Envelope) -> None:
        self.db = db
        self.envelope = envelope
        self._writing: dict[tuple[str, str], tuple[float, DataKey]] = {}
        #: KEK version -> when it was last found recorded with the key ring's fingerprint
        self._checked: dict[int, float] = {}

    def _check_kek(self, version: int) -> None:
        """Refuse to wrap a new data key with a KEK the database does not record (one that
        appeared in the key ring while callsec runs) or whose key differs from its
        fingerprint: ``check_key_ring`` at start cannot see it. Checked again every
        ``KEK_CHECK_SECONDS``."""
        now = time.monotonic()
        if now - self._checked.get(version, -KEK_CHECK_SECONDS) < KEK_CHECK_SECONDS:
            return
        rows = [r for r in custody.recorded(self.db) if r.name == custody.KEK
                and r.version == version and r.retired_at is None]
        keyring = self.envelope.keyring
        problem = custody.problem(keyring, rows[0]) if rows else (
            f"{custody.label(custody.KEK, version)} is in the key ring but the database never "
            "recorded it (run `callsec keys init` to adopt a KEK you mean to use)")
        if problem is not None:
            log.error("refusing to wrap a new data key: %s", problem)
            raise custody.mismatch(keyring, [problem])
        self._checked[version] = now

    def new(self, *, owner_kind: str, owner_id: str) -> tuple[DataKey, dict[str, Any]]:
        """A fresh data key and its ``keys`` row (for bulk inserts)."""
        if owner_kind not in OWNER_KINDS:
            raise ValueError(f"unknown key owner kind {owner_kind!r}")
        key, wrapped = self.envelope.new_data_key()
        self._check_kek(wrapped.kek_version)
        return key, {"key_id": key.key_id, "owner_kind": owner_kind, "owner_id": owner_id,
                     "kek_version": wrapped.kek_version, "wrapped": wrapped.wrapped,
                     "shredded": False, "created_at": utcnow(), "shredded_at": None}

    def create(self, session: Executor, owner_kind: str, owner_id: str) -> DataKey:
        """A fresh data key for ``owner``, inserted now (committed with ``session``)."""
        key, row = self.new(owner_kind=owner_kind, owner_id=owner_id)
        session.execute(insert(KEYS), [row])
        return key

    def load(self, session: Executor, key_id: str) -> DataKey:
        row = session.execute(_BY_ID, {"key_id": key_id}).first()
        if row is None:
            raise KeyUnavailable(f"data key {key_id} does not exist")
        return self.envelope.unwrap(row.key_id, row.kek_version, row.wrapped)

    def for_owner(self, session: Executor, owner_kind: str, owner_id: str) -> DataKey | None:
        row = session.execute(_BY_OWNER, {"kind": owner_kind, "owner": owner_id}).first()
        if row is None:
            return None
        return self.envelope.unwrap(row.key_id, row.kek_version, row.wrapped)

    def owner_key(self, conn: Executor, owner_kind: str, owner_id: str) -> DataKey:
        """The owner's key, created if missing, in the caller's transaction. Concurrent
        creators do not fail: ``INSERT ... ON CONFLICT ... RETURNING`` hands back the winner."""
        key = self.for_owner(conn, owner_kind, owner_id)
        return key if key is not None else self._upsert(conn, owner_kind, owner_id)

    def _upsert(self, conn: Executor, owner_kind: str, owner_id: str) -> DataKey:
        key, row = self.new(owner_kind=owner_kind, owner_id=owner_id)
        won = conn.execute(_UPSERT[dialect_name(conn)], row).one()
        if won.key_id == key.key_id:  # ours went in: no need to unwrap what we just wrapped
            return key
        return self.envelope.unwrap(won.key_id, won.kek_version, won.wrapped)

    def encryption_key(self, conn: Executor, owner_kind: str, owner_id: str, *,
                       create: bool, autocommit: bool = False) -> DataKey | None:
        """The owner's key for encrypting new values (see ``ENCRYPTION_KEY_TTL``);
        created if missing when ``create``. With ``autocommit`` (``conn`` commits each
        statement) a missing key is created by one upsert, committed at once, so cached."""
        now = time.monotonic()
        hit = self.cached_encryption_key(owner_kind, owner_id)
        if hit is not None:
            return hit
        if create and autocommit:  # one round trip: the existing row, or ours
            existing: DataKey | None = self._upsert(conn, owner_kind, owner_id)
        else:
            existing = self.for_owner(conn, owner_kind, owner_id)
        if existing is None:
            # Created in this (uncommitted) transaction: not cached, or a concurrent writer
            # could reference a key row that is not committed yet (foreign key violation).
            return self.owner_key(conn, owner_kind, owner_id) if create else None
        if len(self._writing) >= _ENCRYPTION_KEYS_MAX:
            self._writing.clear()
        self._writing[(owner_kind, owner_id)] = (now, existing)
        return existing

    def cached_encryption_key(self, owner_kind: str, owner_id: str) -> DataKey | None:
        """The owner's key for encrypting, if read less than ``ENCRYPTION_KEY_TTL`` ago."""
        hit = self._writing.get((owner_kind, owner_id))
        if hit is not None and time.monotonic() - hit[0] < ENCRYPTION_KEY_TTL:
            return hit[1]
        return None

    def shred(self, session: Session, key_ids: Iterable[str]) -> int:
        """Crypto-shredding: forget the wrapped keys; their ciphertexts become noise."""
        ids = list(key_ids)
        for owner, (_, key) in list(self._writing.items()):
            if key.key_id in ids:
                self._writing.pop(owner, None)
        if not ids:
            return 0
        return rowcount(session.execute(
            update(DataKeyRow).where(DataKeyRow.key_id.in_(ids), DataKeyRow.shredded.is_(False))
            .values(wrapped=None, shredded=True, shredded_at=utcnow())))

    def counts_by_version(self) -> dict[int, int]:
        with self.db.session() as s:
            rows = s.execute(select(DataKeyRow.kek_version, func.count()).where(
                DataKeyRow.shredded.is_(False)).group_by(DataKeyRow.kek_version))
            return {int(v): int(n) for v, n in rows}

    def rotate(self, *, retire: int | None = None, retire_older_than: float | None = None,
               batch: int = 500) -> RotationReport:
        """Add a KEK version (its fingerprint recorded) and re-wrap every live data key with
        it (data untouched); then destroy KEK version ``retire`` and, with
        ``retire_older_than`` (days), every KEK version recorded more than that long ago:
        backups taken under them become unreadable (erasure reaches backups)."""
        keyring = self.envelope.keyring
        new_version = keyring.add_version()
        custody.record(self.db, keyring, custody.KEK, new_version)
        rewrapped = self.rewrap_all(new_version, batch=batch)
        doomed = set() if retire is None else {retire}
        if retire_older_than is not None:
            cutoff = custody.retirement_cutoff(retire_older_than)
            doomed.update(custody.keks_created_before(self.db, cutoff))
        doomed.discard(new_version)
        for version in sorted(doomed):
            self.retire(version)
        return RotationReport(new_version, rewrapped, tuple(sorted(doomed)))

    def rewrap_all(self, version: int, *, batch: int = 500) -> int:
        """Re-wrap every live key not yet under ``version``, in batches of short transactions."""
        done = 0
        while True:
            with self.db.session() as s:
                rows = list(s.scalars(select(DataKeyRow).where(
                    DataKeyRow.shredded.is_(False), DataKeyRow.kek_version != version)
                    .order_by(DataKeyRow.key_id).limit(batch).with_for_update()))
                for row in rows:
                    assert row.wrapped is not None
                    wrapped = self.envelope.rewrap(row.key_id, row.kek_version, row.wrapped)
                    if wrapped.kek_version != version:
                        raise KeyUnavailable(f"KEK version {version} is not the newest",
                                             kek_version=version)
                    row.kek_version, row.wrapped = wrapped.kek_version, wrapped.wrapped
                done += len(rows)
            if len(rows) < batch:
                return done

    def retire(self, version: int) -> None:
        """Destroy KEK ``version`` and record it as retired (the database no longer expects
        it); refused while a live data key still depends on it."""
        if version == self.envelope.keyring.current_version():
            raise KeyUnavailable(f"KEK version {version} is the newest; rotate first",
                                 kek_version=version)
        remaining = self.counts_by_version().get(version, 0)
        if remaining:
            raise KeyUnavailable(f"KEK version {version} still wraps {remaining} data keys; "
                                 "run `callsec keys rotate` first", kek_version=version)
        self.envelope.keyring.retire(version)
        custody.mark_retired(self.db, version)
        log.info("KEK version %s retired", version)
