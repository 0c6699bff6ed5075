"""Envelope encryption: versioned key-encryption keys (KEKs) wrap one data key per owner.

* KEKs are 256-bit, stored base64 in ``<keyring_dir>/kek-0001.key``, ``kek-0002.key``, ...
  (files 0600, directory 0700) or given inline as ``[crypto] kek`` (then it is version 0 and
  the newest for wrapping; keyring files still unwrap keys wrapped earlier).
* Keys are created only on purpose: ``callsec keys init`` (:meth:`Keyring.create_named_keys`,
  :meth:`Keyring.add_version`) and ``callsec keys rotate``. A missing key raises
  :class:`KeyUnavailable`; it is never replaced by a fresh one (:mod:`.custody` checks the key
  ring against the fingerprints the database recorded).
* A data key (256-bit, one per customer, per call of an unknown caller, or per vault item)
  is wrapped with **AES-256-GCM** under the newest KEK; the associated data binds the wrapped
  key to its key id and KEK version, so a wrapped key cannot be moved to another owner. (GCM
  rather than AES-KW because AES-KW has no associated data.)
* Values are encrypted with AES-256-GCM under the data key; the associated data binds the
  table, the column, the row id and the key id, so a ciphertext copied into another row or
  column does not decrypt (:class:`DecryptionFailed`, never garbage plaintext).

Blob layout: ``0x01 || nonce (12) || ciphertext || tag (16)``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from callsec_ari.config import Settings
from callsec_ari.core.errors import ConfigError
from callsec_ari.store.errors import DataKeyDestroyed, DecryptionFailed, KeyUnavailable

if TYPE_CHECKING:
    from callsec_ari.store.keyrings import KeyRing

log = logging.getLogger(__name__)

KEY_BYTES = 32
NONCE_BYTES = 12
BLOB_VERSION = b"\x01"
INLINE_VERSION = 0
#: How long a process trusts what it last read from the keyring directory.
RECHECK_SECONDS = 1.0
_KEK_FILE = re.compile(r"^kek-(\d{4,})\.key$")
BLIND_INDEX_FILE = "blind-index.key"
AUDIT_FILE = "audit-hmac.key"


def _aad(*parts: str) -> bytes:
    """Unambiguous associated data: each part length-prefixed."""
    out = bytearray(b"callsec.v1")
    for part in parts:
        raw = part.encode("utf-8")
        out += len(raw).to_bytes(2, "big") + raw
    return bytes(out)


def _decode_key(text: str, name: str, version: int | None) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise KeyUnavailable(f"{name} is not a base64-encoded 32-byte key", kek_version=version)
    return raw


def _write_new_key(path: Path) -> bytes:
    """Create ``path`` (0600) with a fresh random key; fails if it already exists."""
    key = secrets.token_bytes(KEY_BYTES)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, base64.b64encode(key) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # atomic and refuses to overwrite
    finally:
        tmp.unlink()
    return key


class Keyring:
    """Versioned KEKs plus the blind-index and audit HMAC keys.

    Files are read on every use (they are tiny), so a rotation or retirement done by another
    process (``callsec keys rotate``) is seen at once.
    """

    def __init__(self, directory: Path, *, inline_kek: str = "", blind_index_key: str = ""
                 ) -> None:
        self.directory = directory
        #: KEK bytes by version: (checked at, the file's (inode, mtime, size), key); the file
        #: is re-checked after RECHECK_SECONDS, so another process's retirement takes effect.
        self._cache: dict[int, tuple[float, tuple[int, int, int], bytes]] = {}
        self._versions: tuple[float, list[int]] | None = None
        self._ciphers: dict[int, tuple[bytes, AESGCM]] = {}
        self._inline = _decode_key(inline_kek, "[crypto] kek", INLINE_VERSION) if inline_kek \
            else None
        self._blind = _decode_key(blind_index_key, "[crypto] blind_index_key", None) \
            if blind_index_key else None

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        c = settings.crypto
        directory = c.keyring_dir
        if not directory.is_absolute():
            directory = settings.base_dir / directory
        return cls(directory, inline_kek=str(c.kek), blind_index_key=str(c.blind_index_key))

    def _ensure_dir(self) -> None:
        """Only for deliberate key creation (``keys init``, ``keys rotate``)."""
        if not self.directory.exists():
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)

    def _path(self, version: int) -> Path:
        return self.directory / f"kek-{version:04d}.key"

    def versions(self) -> list[int]:
        """KEK versions present (the inline KEK counts as version 0)."""
        if self._versions is not None and \
                time.monotonic() - self._versions[0] < RECHECK_SECONDS:
            return list(self._versions[1])
        found = []
        if self.directory.is_dir():
            for entry in os.listdir(self.directory):
                m = _KEK_FILE.match(entry)
                if m:
                    found.append(int(m.group(1)))
        if self._inline is not None:
            found.append(INLINE_VERSION)
        self._versions = (time.monotonic(), sorted(found))
        return sorted(found)

    def current_version(self) -> int:
        """The KEK version new data keys are wrapped with (never creates one)."""
        if self._inline is not None:
            return INLINE_VERSION
        files = self.versions()
        if files:
            return files[-1]
        raise KeyUnavailable(f"no key-encryption key in {self.directory} "
                             "(create the keys with `callsec keys init`)")

    def kek(self, version: int) -> bytes:
        if version == INLINE_VERSION:
            if self._inline is None:
                raise KeyUnavailable("KEK version 0 ([crypto] kek) is not configured",
                                     kek_version=version)
            return self._inline
        path = self._path(version)
        cached = self._cache.get(version)
        now = time.monotonic()
        if cached is not None and now - cached[0] < RECHECK_SECONDS:
            return cached[2]
        try:
            st = path.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if cached is not None and cached[1] == stamp:
                self._cache[version] = (now, stamp, cached[2])
                return cached[2]
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            raise KeyUnavailable(f"KEK version {version} ({path.name}) is missing or retired",
                                 kek_version=version) from None
        except OSError as exc:
            raise KeyUnavailable(f"KEK version {version} ({path.name}) cannot be read: "
                                 f"{exc.strerror}", kek_version=version) from None
        key = _decode_key(text, path.name, version)
        self._cache[version] = (now, stamp, key)
        return key

    def kek_cipher(self, version: int) -> AESGCM:
        """AES-GCM under KEK ``version`` (re-checked against the file on every call)."""
        key = self.kek(version)
        cached = self._ciphers.get(version)
        if cached is None or cached[0] != key:
            cached = (key, AESGCM(key))
            self._ciphers[version] = cached
        return cached[1]

    def add_version(self) -> int:
        """Create the next KEK file and return its version."""
        if self._inline is not None:
            raise ConfigError("an inline KEK is configured; provision keyring files instead",
                              section="crypto", key="kek")
        self._ensure_dir()
        while True:
            files = [v for v in self.versions() if v != INLINE_VERSION]
            version = (files[-1] if files else 0) + 1
            self._versions = None
            try:
                _write_new_key(self._path(version))
            except FileExistsError:
                continue  # another process won the race; take the next number
            self._versions = None
            log.info("created KEK version %s", version)
            return version

    def retire(self, version: int) -> None:
        """Destroy KEK ``version`` (overwrite, then unlink). Callers re-wrap first."""
        if version == INLINE_VERSION:
            raise ConfigError("remove the inline KEK from the configuration instead",
                              section="crypto", key="kek")
        path = self._path(version)
        if not path.exists():
            raise KeyUnavailable(f"KEK version {version} does not exist", kek_version=version)
        with path.open("r+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(0)
            fh.write(b"\0" * size)
            fh.flush()
            os.fsync(fh.fileno())
        path.unlink()
        self._cache.pop(version, None)
        self._ciphers.pop(version, None)
        self._versions = None
        log.info("retired KEK version %s", version)

    def _named_key(self, filename: str, inline: bytes | None, what: str) -> bytes:
        if inline is not None:
            return inline
        path = self.directory / filename
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            raise KeyUnavailable(f"{what} key {path.name} is missing from {self.directory} "
                                 "(create the keys with `callsec keys init`)") from None
        except OSError as exc:
            raise KeyUnavailable(f"{what} key {path.name} cannot be read: {exc.strerror}"
                                 ) from None
        return _decode_key(text, path.name, None)

    def create_named_keys(self) -> list[str]:
        """Create the blind-index and audit keys that are absent (``callsec keys init``);
        never overwrites one. Returns the names of the keys created."""
        created = []
        for filename, inline in ((BLIND_INDEX_FILE, self._blind), (AUDIT_FILE, None)):
            path = self.directory / filename
            if inline is not None or path.exists():
                continue
            self._ensure_dir()
            try:
                _write_new_key(path)
            except FileExistsError:
                continue  # another process created it first
            log.info("created key %s", filename)
            created.append(filename)
        return created

    def blind_index_key(self) -> bytes:
        return self._named_key(BLIND_INDEX_FILE, self._blind, "blind-index")

    def audit_key(self) -> bytes:
        return self._named_key(AUDIT_FILE, None, "audit HMAC")


@dataclass(frozen=True)
class DataKey:
    """An unwrapped data key. Encrypts values bound to (table, column, row id, key id)."""

    key_id: str
    secret: bytes = field(repr=False)

    def encrypt(self, plaintext: str | bytes, *, table: str, column: str, row_id: str) -> bytes:
        data = plaintext.encode("utf-8") if isinstance(plaintext, str) else plaintext
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(self.secret).encrypt(nonce, data, _aad(table, column, row_id, self.key_id))
        return BLOB_VERSION + nonce + sealed

    def decrypt(self, blob: bytes, *, table: str, column: str, row_id: str) -> bytes:
        if len(blob) < 1 + NONCE_BYTES + 16 or blob[:1] != BLOB_VERSION:
            raise DecryptionFailed(table, column, row_id, "not a callsec ciphertext")
        nonce, sealed = blob[1:1 + NONCE_BYTES], blob[1 + NONCE_BYTES:]
        try:
            return AESGCM(self.secret).decrypt(nonce, sealed,
                                               _aad(table, column, row_id, self.key_id))
        except InvalidTag:
            raise DecryptionFailed(table, column, row_id) from None

    def decrypt_text(self, blob: bytes, *, table: str, column: str, row_id: str) -> str:
        return self.decrypt(blob, table=table, column=column, row_id=row_id).decode("utf-8")


@dataclass(frozen=True)
class WrappedKey:
    key_id: str
    kek_version: int
    wrapped: bytes = field(repr=False)


def new_key_id() -> str:
    return "dk-" + secrets.token_hex(8)


class Envelope:
    """Creates, wraps, unwraps and re-wraps data keys with the keyring's KEKs."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring  # a file Keyring or a Pkcs11Keyring (store/keyrings.py)

    def _wrap(self, key_id: str, secret: bytes) -> WrappedKey:
        version = self.keyring.current_version()
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self.keyring.kek_cipher(version).encrypt(
            nonce, secret, _aad("keys", "wrapped", key_id, str(version)))
        return WrappedKey(key_id, version, BLOB_VERSION + nonce + sealed)

    def new_data_key(self, key_id: str | None = None) -> tuple[DataKey, WrappedKey]:
        kid = key_id or new_key_id()
        secret = secrets.token_bytes(KEY_BYTES)
        return DataKey(kid, secret), self._wrap(kid, secret)

    def unwrap(self, key_id: str, kek_version: int, wrapped: bytes | None) -> DataKey:
        if wrapped is None:
            raise DataKeyDestroyed("keys", "wrapped", key_id, "the data key was destroyed")
        kek = self.keyring.kek_cipher(kek_version)
        if len(wrapped) < 1 + NONCE_BYTES + 16 or wrapped[:1] != BLOB_VERSION:
            raise DecryptionFailed("keys", "wrapped", key_id, "not a wrapped key")
        try:
            secret = kek.decrypt(wrapped[1:1 + NONCE_BYTES], wrapped[1 + NONCE_BYTES:],
                                         _aad("keys", "wrapped", key_id, str(kek_version)))
        except InvalidTag:
            raise DecryptionFailed("keys", "wrapped", key_id,
                                   f"KEK version {kek_version} does not unwrap it (wrong key?)"
                                   ) from None
        return DataKey(key_id, secret)

    def rewrap(self, key_id: str, kek_version: int, wrapped: bytes) -> WrappedKey:
        """Unwrap with the old KEK and wrap with the newest one; the data is untouched."""
        return self._wrap(key_id, self.unwrap(key_id, kek_version, wrapped).secret)
