"""Key custody: the database remembers which keys it depends on, and refuses any other key ring.

Each key the data depends on (every KEK version, the blind-index key, the audit key) has a
*fingerprint* in ``key_fingerprints``: a key check value, never key material. A KEK's is computed
**through the key ring's cipher** (an AES-GCM encryption of a fixed block under a fixed nonce),
so it works for a backend whose KEKs can be used but never read (PKCS#11); the HMAC keys' is an
HMAC of a fixed label.

:func:`check_key_ring` runs wherever the store is opened (every ``callsec`` command, ``callsec
run``): a key that is missing or differs from its fingerprint is refused with
:class:`KeyRingMismatch` (exit 2), naming the key and the fingerprint expected, before anything
is read or written. :func:`init_keys` (``callsec keys init``) is the only place keys are created
besides rotation; it never overwrites one.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from callsec_ari.core.errors import ConfigError, ErrorId
from callsec_ari.store.db import Database
from callsec_ari.store.errors import KeyUnavailable
from callsec_ari.store.models import KeyFingerprintRow, as_utc, utcnow

log = logging.getLogger(__name__)

KEK = "kek"
BLIND_INDEX = "blind-index"
AUDIT = "audit"
_KCV_NONCE = b"\0" * 12
_KCV_BLOCK = b"callsec key check value"
_KCV_AAD = b"callsec.kcv"
FINGERPRINT_CHARS = 32
_INIT_HINT = "create the keys with `callsec keys init`"


class _Cipher(Protocol):
    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...


class KeyRing(Protocol):
    """What custody needs of a key ring (file or PKCS#11)."""

    def versions(self) -> list[int]: ...
    def kek_cipher(self, version: int) -> _Cipher: ...
    def blind_index_key(self) -> bytes: ...
    def audit_key(self) -> bytes: ...


class KeyRingMismatch(ConfigError):
    """The key ring is not the one the database was written with (or a key is missing)."""

    error_id = ErrorId.KEY_RING_MISMATCH

    def __init__(self, message: str) -> None:
        super().__init__(message, section="crypto")


class KeysNotInitialised(ConfigError):
    """The database records no keys yet: ``callsec keys init`` has not been run for it."""

    error_id = ErrorId.KEYS_NOT_INITIALISED

    def __init__(self, message: str) -> None:
        super().__init__(message, section="crypto")


def kek_fingerprint(keyring: KeyRing, version: int) -> str:
    """Key check value of KEK ``version``, computed by the key ring's own cipher."""
    sealed = keyring.kek_cipher(version).encrypt(_KCV_NONCE, _KCV_BLOCK, _KCV_AAD)
    return hashlib.sha256(sealed).hexdigest()[:FINGERPRINT_CHARS]


def hmac_fingerprint(key: bytes, name: str) -> str:
    """Key check value of an HMAC key: an HMAC of a fixed label under the key."""
    label = _KCV_BLOCK + b"/" + name.encode("ascii")
    return hmac.new(key, label, hashlib.sha256).hexdigest()[:FINGERPRINT_CHARS]


def label(name: str, version: int) -> str:
    """How an operator reads the key's name: ``KEK version 1``, ``blind-index key``."""
    return f"KEK version {version}" if name == KEK else f"{name} key"


def fingerprint(keyring: KeyRing, name: str, version: int) -> str:
    """The key ring's fingerprint of key (name, version); :class:`KeyUnavailable` if absent."""
    if name == KEK:
        return kek_fingerprint(keyring, version)
    getter: Callable[[], bytes] = keyring.blind_index_key if name == BLIND_INDEX \
        else keyring.audit_key
    return hmac_fingerprint(getter(), name)


@dataclass(frozen=True)
class Recorded:
    name: str
    version: int
    fingerprint: str
    created_at: datetime
    retired_at: datetime | None


def recorded(db: Database) -> list[Recorded]:
    """Every fingerprint the database holds (retired KEK versions included)."""
    with db.session() as s:
        rows = s.scalars(select(KeyFingerprintRow).order_by(
            KeyFingerprintRow.name, KeyFingerprintRow.version))
        return [Recorded(r.name, r.version, r.fingerprint, as_utc(r.created_at),
                         None if r.retired_at is None else as_utc(r.retired_at)) for r in rows]


def problem(keyring: KeyRing, row: Recorded) -> str | None:
    """Why the key ring's key differs from ``row`` (None: it matches)."""
    what = f"{label(row.name, row.version)} (expected fingerprint {row.fingerprint})"
    try:
        found = fingerprint(keyring, row.name, row.version)
    except KeyUnavailable:
        retired = " (or was retired: what it wrapped can no longer be read)" \
            if row.name == KEK else ""
        return f"{what} is missing from the key ring or unreadable{retired}"
    if not hmac.compare_digest(found, row.fingerprint):
        return f"{what} differs: the key ring holds another key (fingerprint {found})"
    return None


def _where(keyring: KeyRing) -> str:
    directory = getattr(keyring, "directory", None)
    return f" at {directory}" if directory is not None else ""


def _compare(keyring: KeyRing, rows: Iterable[Recorded]) -> list[str]:
    return [p for row in rows if row.retired_at is None
            for p in [problem(keyring, row)] if p is not None]


def mismatch(keyring: KeyRing, problems: list[str]) -> KeyRingMismatch:
    return KeyRingMismatch(
        f"the key ring{_where(keyring)} does not match the database: " + "; ".join(problems)
        + ". Check [crypto] keyring_dir and the configuration file used (relative paths are "
        "resolved against its directory); never create new keys for existing data")


def check_key_ring(db: Database, keyring: KeyRing) -> None:
    """Refuse a key ring that is not the database's (every open of the store calls this).

    A KEK version present in the key ring but not recorded (an inline ``[crypto] kek``, a file
    or token object nobody created with ``keys init`` or ``keys rotate``) is refused too, not
    adopted: the newest KEK wraps every new data key, so adopting one would put new data under
    a key that may be in no backed-up key ring. ``keys init`` records it on purpose."""
    rows = recorded(db)
    if not rows:
        raise KeysNotInitialised(f"the database at {db.where} records no keys yet: "
                                 f"{_INIT_HINT} (it also adopts an existing key ring)")
    problems = _compare(keyring, rows)
    known = {(r.name, r.version) for r in rows}
    problems += [f"{label(KEK, v)} is in the key ring but the database never recorded it "
                 "(run `callsec keys init` to adopt a KEK you mean to use)"
                 for v in keyring.versions() if (KEK, v) not in known]
    if problems:
        raise mismatch(keyring, problems)


def record(db: Database, keyring: KeyRing, name: str, version: int) -> None:
    """Record the fingerprint of key (name, version); a concurrent equal record is fine, a
    different one is refused."""
    value = fingerprint(keyring, name, version)
    try:
        with db.session() as s:
            s.add(KeyFingerprintRow(name=name, version=version, fingerprint=value,
                                    created_at=utcnow()))
        log.info("recorded the fingerprint of %s", label(name, version))
    except IntegrityError:
        with db.session() as s:
            row = s.get(KeyFingerprintRow, (name, version))
        if row is None or not hmac.compare_digest(row.fingerprint, value):
            raise mismatch(keyring, [f"{label(name, version)} was recorded with another "
                                      "fingerprint"]) from None


def mark_retired(db: Database, version: int) -> None:
    """KEK ``version`` was destroyed: the database no longer expects it."""
    with db.session() as s:
        s.execute(update(KeyFingerprintRow).where(
            KeyFingerprintRow.name == KEK, KeyFingerprintRow.version == version,
            KeyFingerprintRow.retired_at.is_(None)).values(retired_at=utcnow()))


def keks_created_before(db: Database, cutoff: datetime) -> list[int]:
    """Live KEK versions whose fingerprint was recorded before ``cutoff``."""
    return [r.version for r in recorded(db)
            if r.name == KEK and r.retired_at is None and r.created_at <= cutoff]


def retirement_cutoff(days: float) -> datetime:
    return utcnow() - timedelta(days=days)


class _Creator(KeyRing, Protocol):
    def add_version(self) -> int: ...


class _NamedKeys(Protocol):
    def create_named_keys(self) -> list[str]: ...


@dataclass(frozen=True)
class InitReport:
    created: list[str]
    recorded: list[str]

    def summary(self) -> str:
        if not self.created and not self.recorded:
            return "the key ring matches the database: nothing to do"
        parts = []
        if self.created:
            parts.append("created " + ", ".join(self.created))
        if self.recorded:
            parts.append("recorded the fingerprints of " + ", ".join(self.recorded))
        return "; ".join(parts)


def init_keys(db: Database, keyring: _Creator, files: _NamedKeys) -> InitReport:
    """``callsec keys init``: refuse a key ring the database does not expect, otherwise create
    the keys that are absent (never overwriting one) and record every fingerprint. ``files``
    holds the blind-index and audit keys (the file key ring, whatever holds the KEKs)."""
    rows = recorded(db)
    problems = _compare(keyring, rows)
    if problems:
        raise mismatch(keyring, problems)
    created = list(files.create_named_keys())
    if not keyring.versions():
        created.append(label(KEK, keyring.add_version()))
    known = {(r.name, r.version) for r in rows}
    wanted = [(BLIND_INDEX, 0), (AUDIT, 0)] + [(KEK, v) for v in keyring.versions()]
    new = [(n, v) for n, v in wanted if (n, v) not in known]
    for name, version in new:
        record(db, keyring, name, version)
    return InitReport(created, [label(n, v) for n, v in new])
