"""KEKs inside a PKCS#11 token (``[crypto] backend = pkcs11``): the KEK never leaves it.

* KEK version N is a 256-bit AES secret-key object labelled ``<pkcs11_key_prefix>000N``
  (default ``callsec-kek-0001``), generated in the token by :meth:`Pkcs11Keyring.add_version`
  with ``CKA_TOKEN``, ``CKA_PRIVATE``, ``CKA_SENSITIVE`` and without ``CKA_EXTRACTABLE``; it may
  only encrypt and decrypt. Data keys are wrapped and unwrapped with ``CKM_AES_GCM`` by the
  token, in the same blob format as the file key ring (``ciphertext || tag``, 12-byte nonce,
  associated data binding the key id and KEK version). A database whose data keys are wrapped
  by file KEKs cannot switch to a token in place (the token cannot read the file KEKs): start
  the token with a fresh database, or migrate by export and import.
* Retiring a version destroys its object in the token.
* The blind-index and audit HMAC keys stay in files in ``keyring_dir`` (a
  :class:`~callsec_ari.store.crypto.Keyring` does that part): they are needed for every
  lookup and every audit entry, and HMAC in a token per lookup would buy little.

One logged-in read-write session per process and token is opened at start and reused (guarded
by a lock: the store runs in worker threads); it is re-opened once if the token drops it.
The PIN never appears in a message or a log line.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography.exceptions import InvalidTag

from callsec_ari.config import Settings
from callsec_ari.core.errors import ConfigError
from callsec_ari.store.crypto import KEY_BYTES, RECHECK_SECONDS, Keyring
from callsec_ari.store.errors import KeyUnavailable

try:
    import pkcs11
    from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, Session
    from pkcs11 import exceptions as p11
    from pkcs11.mechanisms import GCMParams
except ModuleNotFoundError as exc:  # pragma: no cover - the hsm extra is not installed
    raise ConfigError("backend = pkcs11 needs python-pkcs11 (pip install 'callsec-ari[hsm]')",
                      section="crypto", key="backend") from exc

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Pkcs11Lib

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_TAG_BITS = 128
#: The token dropped the session (restart, removal, logout): open a new one and retry once.
_SESSION_LOST: tuple[type[Exception], ...] = (
    p11.SessionClosed, p11.SessionHandleInvalid, p11.DeviceRemoved, p11.TokenNotPresent,
    p11.UserNotLoggedIn, p11.DeviceError)
#: A cached key handle no longer names an object (destroyed by another process).
_KEY_GONE: tuple[type[Exception], ...] = (p11.KeyHandleInvalid, p11.ObjectHandleInvalid)
_PIN_REFUSED: tuple[type[Exception], ...] = (
    p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange, p11.PinExpired, p11.PinLocked,
    p11.UserPinNotInitialized)
#: The KEK template: in the token, never readable, only for AES-GCM wrapping of data keys.
_KEK_TEMPLATE = {
    Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False, Attribute.ENCRYPT: True, Attribute.DECRYPT: True,
    Attribute.WRAP: False, Attribute.UNWRAP: False, Attribute.SIGN: False,
    Attribute.VERIFY: False, Attribute.DERIVE: False,
}

_TOKENS: dict[tuple[str, str, str], _Token] = {}
_REGISTRY_LOCK = threading.Lock()


def _load_library(module: Path) -> Pkcs11Lib:
    """The PKCS#11 library (python-pkcs11 loads and initializes it once per process)."""
    path = str(module)
    if not module.is_file():
        raise ConfigError(f"{path} does not exist", section="crypto", key="pkcs11_module")
    with _REGISTRY_LOCK:
        try:
            return pkcs11.lib(path)
        except p11.PKCS11Error as exc:
            raise ConfigError(f"{path} is not a loadable PKCS#11 library "
                              f"({type(exc).__name__})", section="crypto",
                              key="pkcs11_module") from None


class _Token:
    """One logged-in session on one token, shared by the process; every call holds the lock."""

    def __init__(self, module: Path, label: str, pin: str) -> None:
        self.module, self.label, self._pin = module, label, pin
        self.lock = threading.RLock()
        self._session: Session | None = None
        #: Key objects by label, valid for the current session only.
        self.keys: dict[str, pkcs11.SecretKey] = {}

    @classmethod
    def shared(cls, module: Path, label: str, pin: str) -> _Token:
        ident = (str(module), label, hashlib.sha256(pin.encode()).hexdigest())
        with _REGISTRY_LOCK:
            token = _TOKENS.get(ident)
            if token is None:
                token = _TOKENS[ident] = cls(module, label, pin)
        return token

    def _open(self) -> Session:
        lib = _load_library(self.module)
        try:
            token = lib.get_token(token_label=self.label)
        except p11.NoSuchToken:
            raise ConfigError(f"no token labelled {self.label!r} in {self.module}",
                              section="crypto", key="pkcs11_token_label") from None
        except p11.MultipleTokensReturned:
            raise ConfigError(f"several tokens are labelled {self.label!r}", section="crypto",
                              key="pkcs11_token_label") from None
        except p11.PKCS11Error as exc:
            raise KeyUnavailable(f"PKCS#11 token {self.label!r} cannot be reached "
                                 f"({type(exc).__name__})") from None
        try:
            session: Session = token.open(rw=True, user_pin=self._pin)
        except _PIN_REFUSED as exc:
            raise ConfigError(f"token {self.label!r} refused the PIN ({type(exc).__name__})",
                              section="crypto", key="pkcs11_pin") from None
        except p11.PKCS11Error as exc:
            raise KeyUnavailable(f"cannot log in to PKCS#11 token {self.label!r} "
                                 f"({type(exc).__name__})") from None
        log.info("opened a session on PKCS#11 token %s", self.label)
        return session

    def _drop(self) -> None:
        session, self._session = self._session, None
        self.keys.clear()
        if session is not None:
            try:
                session.close()
            except p11.PKCS11Error:
                pass

    def run(self, op: Callable[[Session], _T]) -> _T:
        """``op(session)`` under the lock; a session the token dropped is re-opened once."""
        with self.lock:
            for attempt in (1, 2):
                if self._session is None:
                    self._session = self._open()
                try:
                    return op(self._session)
                except _SESSION_LOST as exc:
                    log.warning("PKCS#11 token %s dropped the session (%s)", self.label,
                                type(exc).__name__)
                    self._drop()
                    if attempt == 2:
                        raise KeyUnavailable(f"PKCS#11 token {self.label!r} is unreachable "
                                             f"({type(exc).__name__})") from None
            raise AssertionError("unreachable")  # pragma: no cover


class _TokenCipher:
    """AES-256-GCM under KEK ``version``, computed by the token (the AESGCM surface)."""

    def __init__(self, ring: Pkcs11Keyring, version: int) -> None:
        self._ring, self._version = ring, version

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        return self._ring._gcm(self._version, True, nonce, data, associated_data)

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        return self._ring._gcm(self._version, False, nonce, data, associated_data)


class Pkcs11Keyring:
    """Versioned KEKs in a PKCS#11 token; the HMAC keys in files (see the module doc)."""

    def __init__(self, *, module: Path, token_label: str, pin: str, key_prefix: str,
                 files: Keyring) -> None:
        self._token = _Token.shared(module, token_label, pin)
        self._prefix = key_prefix
        self._label_re = re.compile(re.escape(key_prefix) + r"(\d{4,})")
        self._files = files
        self._versions: tuple[float, list[int]] | None = None
        self._token.run(lambda session: None)  # log in now: a wrong PIN fails at start

    @classmethod
    def from_settings(cls, settings: Settings) -> Pkcs11Keyring:
        c = settings.crypto
        if c.pkcs11_module is None:
            raise ConfigError("is required with backend = pkcs11", section="crypto",
                              key="pkcs11_module")
        return cls(module=c.pkcs11_module, token_label=c.pkcs11_token_label,
                   pin=str(c.pkcs11_pin), key_prefix=c.pkcs11_key_prefix,
                   files=Keyring.from_settings(settings))

    @property
    def directory(self) -> Path:
        """Where the blind-index and audit keys are (the KEKs are in the token)."""
        return self._files.directory

    @property
    def token_label(self) -> str:
        return self._token.label

    def label(self, version: int) -> str:
        return f"{self._prefix}{version:04d}"

    def _list_versions(self, session: Session) -> list[int]:
        found = set()
        for obj in session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY,
                                        Attribute.KEY_TYPE: KeyType.AES}):
            m = self._label_re.fullmatch(str(obj[Attribute.LABEL] or ""))
            if m:
                found.add(int(m.group(1)))
        return sorted(found)

    def versions(self) -> list[int]:
        """KEK versions in the token (re-read after ``RECHECK_SECONDS``)."""
        cached = self._versions
        if cached is not None and time.monotonic() - cached[0] < RECHECK_SECONDS:
            return list(cached[1])
        found = self._token.run(self._list_versions)
        self._versions = (time.monotonic(), found)
        return list(found)

    def current_version(self) -> int:
        """The newest KEK version: new data keys are wrapped with it."""
        found = self.versions()
        if not found:
            raise KeyUnavailable(f"no key-encryption key ({self._prefix}NNNN) in PKCS#11 token "
                                 f"{self._token.label!r}; create one with `callsec keys init`")
        return found[-1]

    def _key(self, session: Session, version: int) -> pkcs11.SecretKey:
        label = self.label(version)
        key = self._token.keys.get(label)
        if key is None:
            try:
                found = session.get_key(object_class=ObjectClass.SECRET_KEY,
                                        key_type=KeyType.AES, label=label)
            except p11.NoSuchKey:
                raise KeyUnavailable(f"KEK version {version} ({label}) is not in token "
                                     f"{self._token.label!r} (missing or retired)",
                                     kek_version=version) from None
            except p11.MultipleObjectsReturned:
                raise KeyUnavailable(f"token {self._token.label!r} holds several {label}",
                                     kek_version=version) from None
            assert isinstance(found, pkcs11.SecretKey)
            key = self._token.keys[label] = found
        return key

    def kek_cipher(self, version: int) -> _TokenCipher:
        """AES-GCM under KEK ``version`` inside the token (``KeyUnavailable`` if it is gone)."""
        self._token.run(lambda session: self._key(session, version))
        return _TokenCipher(self, version)

    def _gcm(self, version: int, encrypt: bool, nonce: bytes, data: bytes,
             aad: bytes | None) -> bytes:
        params = GCMParams(bytes(nonce), None if aad is None else bytes(aad), _TAG_BITS)

        def op(session: Session) -> bytes:
            for attempt in (1, 2):
                key: Any = self._key(session, version)  # SecretKey with the AES mixins
                try:
                    if encrypt:
                        return bytes(key.encrypt(bytes(data), mechanism=Mechanism.AES_GCM,
                                                 mechanism_param=params))
                    return bytes(key.decrypt(bytes(data), mechanism=Mechanism.AES_GCM,
                                             mechanism_param=params))
                except _KEY_GONE:  # destroyed by another process: look it up again
                    self._token.keys.pop(self.label(version), None)
                    if attempt == 2:
                        raise KeyUnavailable(f"KEK version {version} is retired",
                                             kek_version=version) from None
                except _SESSION_LOST:
                    raise
                except p11.PKCS11Error as exc:
                    if not encrypt:  # tokens report a bad tag in various ways
                        raise InvalidTag() from None
                    raise KeyUnavailable(f"token {self._token.label!r} refused AES-GCM with KEK "
                                         f"version {version} ({type(exc).__name__})",
                                         kek_version=version) from None
            raise AssertionError("unreachable")  # pragma: no cover

        return self._token.run(op)

    def add_version(self) -> int:
        """Generate the next KEK version as a non-extractable AES-256 key in the token."""
        return self._token.run(self._generate)

    def _generate(self, session: Session) -> int:
        while True:
            found = self._list_versions(session)
            version = (found[-1] if found else 0) + 1
            label = self.label(version)
            key = session.generate_key(KeyType.AES, KEY_BYTES * 8, label=label,
                                       id=label.encode(), store=True, template=_KEK_TEMPLATE)
            same = list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY,
                                             Attribute.LABEL: label}))
            if len(same) == 1:
                self._versions = None
                log.info("created KEK version %s in PKCS#11 token %s", version,
                         self._token.label)
                return version
            key.destroy()  # another process created this version at the same time: next one

    def retire(self, version: int) -> None:
        """Destroy KEK ``version``'s object in the token. Callers re-wrap first."""
        def op(session: Session) -> None:
            self._key(session, version).destroy()
            self._token.keys.pop(self.label(version), None)

        self._token.run(op)
        self._versions = None
        log.info("retired KEK version %s in PKCS#11 token %s", version, self._token.label)

    @property
    def files(self) -> Keyring:
        """The file key ring holding the blind-index and audit keys."""
        return self._files

    def create_named_keys(self) -> list[str]:
        """Create the absent blind-index and audit key files (``callsec keys init``)."""
        return self._files.create_named_keys()

    def blind_index_key(self) -> bytes:
        return self._files.blind_index_key()

    def audit_key(self) -> bytes:
        return self._files.audit_key()
