"""Which key ring holds the key-encryption keys: ``[crypto] backend``.

* ``file`` (default, for development): :class:`~callsec_ari.store.crypto.Keyring`, KEKs in
  ``<keyring_dir>/kek-0001.key`` ...
* ``pkcs11``: :class:`~callsec_ari.store.pkcs11.Pkcs11Keyring`, KEKs are non-extractable AES
  keys inside a PKCS#11 token (a hardware security module); data keys are wrapped and unwrapped
  by the token. The blind-index and audit HMAC keys stay in files in ``keyring_dir``.

Both offer the :class:`KeyRing` surface that :class:`~callsec_ari.store.crypto.Envelope`,
the data-key store (rotation, retirement) and ``callsec keys ...`` use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from callsec_ari.config import Settings
from callsec_ari.core.errors import ConfigError
from callsec_ari.store.crypto import Keyring


class KekCipher(Protocol):
    """AES-256-GCM under one KEK: ``encrypt`` returns ``ciphertext || tag``; ``decrypt``
    raises :class:`cryptography.exceptions.InvalidTag` when the tag does not verify."""

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None, /) -> bytes: ...

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None, /) -> bytes: ...


class KeyRing(Protocol):
    """Versioned KEKs plus the blind-index and audit HMAC keys."""

    @property
    def directory(self) -> Path: ...

    def versions(self) -> list[int]: ...

    def current_version(self) -> int: ...

    def kek_cipher(self, version: int) -> KekCipher: ...

    def add_version(self) -> int: ...

    def retire(self, version: int) -> None: ...

    def blind_index_key(self) -> bytes: ...

    def audit_key(self) -> bytes: ...


def open_keyring(settings: Settings) -> KeyRing:
    """The key ring ``[crypto] backend`` names (opening a PKCS#11 token logs in once)."""
    backend = settings.crypto.backend
    if backend == "file":
        return Keyring.from_settings(settings)
    if backend == "pkcs11":
        from callsec_ari.store.pkcs11 import Pkcs11Keyring  # needs python-pkcs11 (extra hsm)

        return Pkcs11Keyring.from_settings(settings)
    raise ConfigError("must be file or pkcs11", section="crypto", key="backend")
