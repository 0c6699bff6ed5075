"""One place that wires the store together from :class:`Settings` (for the CLI, the app and
tests): database, keyring, envelope, blind index, audit log, customers, vault, records."""

from __future__ import annotations

from dataclasses import dataclass

from callsec_ari.config import Settings
from callsec_ari.store import custody
from callsec_ari.store.audit import AuditLog
from callsec_ari.store.blind import BlindIndex
from callsec_ari.store.captures import CaptureStore
from callsec_ari.store.crypto import Envelope, Keyring
from callsec_ari.store.customers import CustomerStore
from callsec_ari.store.db import Database, current_revision, head_revision, open_database
from callsec_ari.store.db import upgrade as migrate
from callsec_ari.store.errors import SchemaOutdated
from callsec_ari.store.keyrings import KeyRing, open_keyring
from callsec_ari.store.keys import DataKeys
from callsec_ari.store.records import Records
from callsec_ari.store.vault import Vault


@dataclass
class Store:
    settings: Settings
    db: Database
    keyring: KeyRing
    keys: DataKeys
    blind: BlindIndex
    audit: AuditLog
    customers: CustomerStore
    vault: Vault
    records: Records
    captures: CaptureStore

    def close(self) -> None:
        self.db.dispose()


def build_store(settings: Settings, db: Database, keyring: KeyRing | None = None) -> Store:
    keyring = keyring or open_keyring(settings)
    keys = DataKeys(db, Envelope(keyring))
    blind = BlindIndex(keyring.blind_index_key(), settings.verification.default_region)
    audit = AuditLog(db, hmac_key=keyring.audit_key())
    return Store(settings=settings, db=db, keyring=keyring, keys=keys, blind=blind, audit=audit,
                 customers=CustomerStore(db, keys, blind, audit),
                 vault=Vault(db, keys, audit), records=Records(db, keys),
                 captures=CaptureStore(db, audit))


def require_head(db: Database) -> None:
    """:class:`SchemaOutdated` unless the database is at the newest migration."""
    current, head = current_revision(db), head_revision()
    if current != head:
        raise SchemaOutdated(current, head)


def open_store(settings: Settings, *, upgrade: bool = True) -> Store:
    """Open the database (migrating it with ``upgrade``; without, refusing a database behind
    the newest migration) and the keyring; refuse a key ring that does not match the
    fingerprints the database recorded (:mod:`.custody`). A SQLite file that does not exist is
    refused, not created (``db upgrade`` and ``keys init`` create it). Only ``callsec run`` and
    ``callsec db upgrade`` migrate; every other command passes ``upgrade=False``."""
    db = open_database(settings, upgrade=upgrade, create=False)
    try:
        if not upgrade:
            require_head(db)
        keyring = open_keyring(settings)
        custody.check_key_ring(db, keyring)
        return build_store(settings, db, keyring)
    except BaseException:
        db.dispose()
        raise


def init_keys(settings: Settings, *, upgrade: bool = True) -> custody.InitReport:
    """``callsec keys init``: create the absent keys and record their fingerprints. A new
    (empty) database gets the schema first; with ``upgrade=False`` (the CLI) a database that
    already has a schema older than the newest is refused (:class:`SchemaOutdated`): only
    ``run`` and ``db upgrade`` migrate existing data."""
    db = open_database(settings, upgrade=False)
    try:
        if upgrade or current_revision(db) is None:
            migrate(db)
        else:
            require_head(db)
        return custody.init_keys(db, open_keyring(settings), Keyring.from_settings(settings))
    finally:
        db.dispose()
