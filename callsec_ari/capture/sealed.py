"""The sealed sink: every captured value encrypted to the merchant's public key.

``[capture] sink = sealed`` with ``[capture] sealed_public_key = PATH`` (an X.509 certificate or
a public key, PEM or DER). callsec holds no key that opens what it seals: neither its database
nor its operators can read the values; only the merchant's private key can
(``examples/merchant_decrypt.py`` shows how).

Constructions (standard, from ``cryptography``):

- X25519 or P-256 key: HPKE (RFC 9180) base mode, DHKEM(X25519 | P-256, HKDF-SHA256),
  HKDF-SHA256, AES-256-GCM; ``alg`` ``HPKE-X25519-SHA256-A256GCM`` / ``HPKE-P256-SHA256-A256GCM``;
  ``ct`` is ``enc || ciphertext`` (single-shot ``Seal``).
- RSA key (>= 2048 bits): a fresh AES-256-GCM key per value, wrapped with RSA-OAEP (SHA-256,
  MGF1-SHA-256); ``alg`` ``RSA-OAEP-256+A256GCM``; ``ek`` wrapped key, ``iv`` 12-byte nonce.

Each value is bound to its place by :func:`context` (HPKE ``info``, AES-GCM associated data):
``callsec-sealed-v1 NUL capture_id NUL field NUL kid``, where ``kid`` is the SHA-256 (hex) of
the key's SubjectPublicKeyInfo. A sealed value moved to another capture or field, or opened
under another key, fails to decrypt.

Envelope per field: ``{"v": 1, "alg", "kid", "ct"[, "ek", "iv"]}`` (base64, standard alphabet).
The plaintext is the value as UTF-8 (card number digits, expiry ``MMYY``, CVV, the whole IBAN).

The CVV (PCI DSS 3.3.1: sensitive authentication data is not retained after authorisation,
encrypted or not) is sealed like the rest but never written to the database: it waits in memory
(:class:`OnceStore`) for the first ``GET /api/v1/captures/{id}`` that asks for it, at most
:data:`ONCE_SECONDS`, and is dropped once handed over (or at expiry, or on restart).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, hpke, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from callsec_ari.capture.fields import FieldKind, build_iban
from callsec_ari.capture.sinks import CVV, CaptureValues, SinkResult, wipe_all
from callsec_ari.core.errors import ConfigError

log = logging.getLogger(__name__)

VERSION = 1
LABEL = b"callsec-sealed-v1"
HPKE_X25519 = "HPKE-X25519-SHA256-A256GCM"
HPKE_P256 = "HPKE-P256-SHA256-A256GCM"
RSA_OAEP = "RSA-OAEP-256+A256GCM"
MIN_RSA_BITS = 2048
#: How long a sealed CVV waits in memory for its one hand-over.
ONCE_SECONDS = 600.0
_ONCE_MAX = 1000
_KEY = {"section": "capture", "key": "sealed_public_key"}

PublicKey = x25519.X25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def context(capture_id: str, field: str, kid: str) -> bytes:
    """What a sealed value is bound to (HPKE info / AES-GCM associated data)."""
    return b"\x00".join((LABEL, capture_id.encode("utf-8"), field.encode("utf-8"),
                         kid.encode("ascii")))


@dataclass(frozen=True)
class SealingKey:
    """The merchant's public key, its ``kid`` and the construction it takes."""

    key: PublicKey
    kid: str
    alg: str

    def seal(self, capture_id: str, field: str, plaintext: bytes) -> dict[str, object]:
        info = context(capture_id, field, self.kid)
        envelope: dict[str, object] = {"v": VERSION, "alg": self.alg, "kid": self.kid}
        if isinstance(self.key, rsa.RSAPublicKey):
            cek, iv = AESGCM.generate_key(bit_length=256), os.urandom(12)
            envelope["ek"] = _b64(self.key.encrypt(cek, padding.OAEP(
                mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)))
            envelope["iv"] = _b64(iv)
            envelope["ct"] = _b64(AESGCM(cek).encrypt(iv, plaintext, info))
            return envelope
        kem = hpke.KEM.X25519 if self.alg == HPKE_X25519 else hpke.KEM.P256
        suite = hpke.Suite(kem, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
        envelope["ct"] = _b64(suite.encrypt(plaintext, self.key, info=info))
        return envelope


def _read_public_key(raw: bytes) -> tuple[object, datetime | None]:
    """(public key, certificate expiry or None) from PEM/DER certificate or public key."""
    if b"PRIVATE KEY" in raw:
        raise ConfigError("this is a private key: callsec needs only the merchant's public key "
                          "(certificate or public key); keep the private key off this host",
                          **_KEY)
    loaders: tuple[Callable[[bytes], object], ...] = (
        x509.load_pem_x509_certificate, serialization.load_pem_public_key,
        x509.load_der_x509_certificate, serialization.load_der_public_key)
    for load in loaders:
        try:
            loaded = load(raw)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
        if isinstance(loaded, x509.Certificate):
            return loaded.public_key(), loaded.not_valid_after_utc
        return loaded, None
    raise ConfigError("not an X.509 certificate or public key (PEM or DER)", **_KEY)


def kid_of(key: PublicKey) -> str:
    spki = key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def sealing_key(key: object) -> SealingKey:
    if isinstance(key, x25519.X25519PublicKey):
        return SealingKey(key, kid_of(key), HPKE_X25519)
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return SealingKey(key, kid_of(key), HPKE_P256)
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= MIN_RSA_BITS:
        return SealingKey(key, kid_of(key), RSA_OAEP)
    raise ConfigError("unsupported key type: use an X25519, P-256 or RSA (>= 2048 bits) "
                      "public key or certificate", **_KEY)


def load_sealing_key(path: Path | None, *, now: datetime | None = None) -> SealingKey:
    """The key of ``[capture] sealed_public_key``; :class:`ConfigError` naming it otherwise."""
    if path is None:
        raise ConfigError("sink = sealed needs the merchant's public key or certificate", **_KEY)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the key file: {exc.__class__.__name__}", **_KEY) \
            from None
    key, not_after = _read_public_key(raw)
    if not_after is not None and not_after <= (now or datetime.now(UTC)):
        raise ConfigError("the merchant's certificate has expired", **_KEY)
    return sealing_key(key)


class OnceStore:
    """Sealed values handed over once, from memory (the CVV): never in the database."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 ttl: float = ONCE_SECONDS) -> None:
        self._clock, self._ttl = clock, ttl
        self._items: OrderedDict[str, tuple[float, dict[str, dict[str, object]]]] = \
            OrderedDict()

    def put(self, capture_id: str, sealed: Mapping[str, dict[str, object]]) -> None:
        if sealed:
            self._items[capture_id] = (self._clock() + self._ttl, dict(sealed))
            while len(self._items) > _ONCE_MAX:
                self._items.popitem(last=False)

    def take(self, capture_id: str) -> dict[str, dict[str, object]]:
        """The capture's once-values (then gone); ``{}`` when taken, expired or never held."""
        now = self._clock()
        for cid in [c for c, (expires, _) in self._items.items() if expires <= now]:
            del self._items[cid]
        item = self._items.pop(capture_id, None)
        return item[1] if item is not None else {}


class SealedSink:
    """Every field sealed to the merchant's key; the CVV's envelope held for one hand-over."""

    name = "sealed"

    def __init__(self, key: SealingKey, iban_country: str) -> None:
        self.key = key
        self.iban_country = iban_country
        self.once = OnceStore()

    async def store(self, capture: CaptureValues) -> SinkResult:
        return await asyncio.to_thread(self.store_sync, capture)

    def store_sync(self, capture: CaptureValues) -> SinkResult:
        sealed: dict[str, dict[str, object]] = {}
        once: dict[str, dict[str, object]] = {}
        try:
            for kind, holder in capture.values:
                value = holder.take()
                if kind == FieldKind.IBAN.value:
                    value = build_iban(self.iban_country, value)
                raw = bytearray(value.encode("utf-8"))
                del value
                try:
                    envelope = self.key.seal(capture.capture_id, kind, bytes(raw))
                finally:
                    raw[:] = bytes(len(raw))
                (once if kind == CVV else sealed)[kind] = envelope
        finally:
            wipe_all(capture.values)
        self.once.put(capture.capture_id, once)
        log.info("capture %s: %d field(s) sealed to the merchant's key", capture.capture_id,
                 len(sealed) + len(once))
        return SinkResult(sealed=sealed, sealed_once=sorted(once))
