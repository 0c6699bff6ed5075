#!/usr/bin/env python3
"""Open the values callsec sealed to your public key (``[capture] sink = sealed``).

Runs on the merchant's side, where the private key lives; needs only ``cryptography`` (>= 47)::

    python merchant_decrypt.py --key merchant-key.pem capture.json
    curl -s -H "Authorization: Bearer $TOKEN" https://callsec.example/api/v1/captures/CP-... \\
        | python merchant_decrypt.py --key merchant-key.pem -

The input is the answer of ``GET /api/v1/captures/{id}`` (``capture_id`` and
``fields.<kind>.sealed``) or ``{"capture_id": ..., "sealed": {"<kind>": envelope}}``. Prints
``kind: value`` per field (``--json``: one JSON object). An encrypted private key's password is
read from ``--password-file`` or the ``MERCHANT_KEY_PASSWORD`` environment variable.

Exit status: 0 all opened, 1 a field did not open (another key, a value moved to another
capture or field, or altered), 2 bad input.

The format (see callsec's README, "Sealed sink"): per field ``{"v": 1, "alg", "kid", "ct"}``,
plus ``"ek"`` and ``"iv"`` for RSA; base64. Each value is bound to
``b"callsec-sealed-v1\\0" + capture_id + b"\\0" + field + b"\\0" + kid`` (HPKE info, or
AES-GCM associated data), ``kid`` = SHA-256 (hex) of the public key's SubjectPublicKeyInfo.

- ``HPKE-X25519-SHA256-A256GCM`` / ``HPKE-P256-SHA256-A256GCM``: RFC 9180 base mode,
  DHKEM(X25519 | P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM; ``ct`` = enc || ciphertext.
- ``RSA-OAEP-256+A256GCM``: ``ek`` = RSA-OAEP(SHA-256, MGF1-SHA-256) of a 256-bit AES key,
  ``iv`` the 12-byte GCM nonce, ``ct`` ciphertext || tag.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hpke, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

LABEL = b"callsec-sealed-v1"
SUITES = {
    "HPKE-X25519-SHA256-A256GCM": hpke.KEM.X25519,
    "HPKE-P256-SHA256-A256GCM": hpke.KEM.P256,
}
RSA_OAEP = "RSA-OAEP-256+A256GCM"


class CannotOpen(Exception):
    """A sealed value that this key does not open."""


def kid_of(private_key: Any) -> str:
    spki = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def open_value(private_key: Any, capture_id: str, field: str, envelope: dict[str, Any]) -> str:
    """The plaintext of one sealed field; :class:`CannotOpen` if this key does not open it."""
    kid = kid_of(private_key)
    if envelope.get("v") != 1:
        raise CannotOpen("unknown envelope version")
    if envelope.get("kid") != kid:
        raise CannotOpen("sealed to another key")
    info = b"\x00".join((LABEL, capture_id.encode(), field.encode(), kid.encode()))
    alg = envelope.get("alg")
    try:
        ct = base64.b64decode(envelope["ct"], validate=True)
        if alg == RSA_OAEP and isinstance(private_key, rsa.RSAPrivateKey):
            cek = private_key.decrypt(base64.b64decode(envelope["ek"], validate=True),
                                      padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                   algorithm=hashes.SHA256(), label=None))
            plain = AESGCM(cek).decrypt(base64.b64decode(envelope["iv"], validate=True), ct, info)
        elif alg in SUITES and isinstance(private_key, (x25519.X25519PrivateKey,
                                                        ec.EllipticCurvePrivateKey)):
            suite = hpke.Suite(SUITES[alg], hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
            plain = suite.decrypt(ct, private_key, info=info)
        else:
            raise CannotOpen(f"algorithm {alg!r} does not fit this key")
    except (KeyError, ValueError, TypeError, InvalidTag, binascii.Error) as exc:
        raise CannotOpen(f"does not open ({exc.__class__.__name__})") from None
    return plain.decode("utf-8")


def sealed_fields(document: dict[str, Any]) -> tuple[str, dict[str, dict[str, Any]]]:
    """(capture id, kind -> envelope) from a capture answer or a compact document."""
    capture_id = document.get("capture_id")
    if not isinstance(capture_id, str):
        raise ValueError("no capture_id")
    if isinstance(document.get("sealed"), dict):
        return capture_id, dict(document["sealed"])
    fields = document.get("fields") or {}
    return capture_id, {kind: dict(per_field["sealed"]) for kind, per_field in fields.items()
                        if isinstance(per_field, dict) and isinstance(per_field.get("sealed"),
                                                                      dict)}


def load_private_key(path: Path, password: bytes | None) -> Any:
    return serialization.load_pem_private_key(path.read_bytes(), password=password)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--key", type=Path, required=True, help="the private key (PEM)")
    parser.add_argument("--password-file", type=Path, help="the private key's password")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("sealed", help="the sealed JSON (a file, or - for stdin)")
    args = parser.parse_args(argv)
    password = args.password_file.read_bytes().strip() if args.password_file else \
        os.environb.get(b"MERCHANT_KEY_PASSWORD")
    try:
        key = load_private_key(args.key, password)
        raw = sys.stdin.read() if args.sealed == "-" else Path(args.sealed).read_text("utf-8")
        capture_id, fields = sealed_fields(json.loads(raw))
    except (OSError, ValueError, TypeError) as exc:
        print(f"merchant_decrypt: bad input: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 2
    if not fields:
        print("merchant_decrypt: no sealed fields in the input", file=sys.stderr)
        return 2
    values: dict[str, str] = {}
    failed = False
    for kind, envelope in sorted(fields.items()):
        try:
            values[kind] = open_value(key, capture_id, kind, envelope)
        except CannotOpen as exc:
            print(f"merchant_decrypt: {kind}: {exc}", file=sys.stderr)
            failed = True
    if args.json:
        print(json.dumps({"capture_id": capture_id, "values": values}))
    else:
        for kind, value in values.items():
            print(f"{kind}: {value}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
