"""Pure credential helpers: password KDF, opaque tokens, TOTP step matching, login delays.

Password KDF: stdlib ``hashlib.scrypt`` (RFC 7914), memory-hard, with N=2**14, r=8, p=1
(16 MiB and ~50 ms per hash: the RFC's interactive-login parameters) and a 16-byte random salt.
Chosen over argon2id because it needs no extra native dependency and scrypt is equally
memory-hard for this purpose; the parameters are stored in each hash
(``scrypt$<log2 N>$<r>$<p>$<salt>$<hash>``), so they can be raised later without breaking
existing accounts.

Session tokens are 256-bit ``secrets.token_urlsafe`` values; only their SHA-256 is stored.
The desk's CSRF token is derived from the session token (signed double-submit: an attacker
who cannot read the session cookie cannot compute it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from datetime import datetime

import pyotp

SCRYPT_LOG_N = 14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MAX_MEM = 64 * 1024 * 1024
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
TOKEN_BYTES = 32
TOTP_DIGITS = 6
TOTP_INTERVAL = 30
#: Codes of the previous and the next time step are accepted (clock drift).
TOTP_DRIFT_STEPS = 1


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=2 ** log_n, r=r, p=p,
                          maxmem=MAX_MEM, dklen=HASH_BYTES)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_LOG_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def _parse(encoded: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    try:
        log_n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except (ValueError, binascii.Error):
        return None
    if not (10 <= log_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16 and salt and digest):
        return None
    return log_n, r, p, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time comparison; a malformed hash verifies nothing."""
    parsed = _parse(encoded)
    if parsed is None or len(password) > MAX_PASSWORD_LENGTH:
        return False
    log_n, r, p, salt, digest = parsed
    return hmac.compare_digest(_scrypt(password, salt, log_n, r, p), digest)


#: Verified against unknown users so that a missing account costs the same time.
DUMMY_HASH = "scrypt$14$8$1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"at least {MIN_PASSWORD_LENGTH} characters are required"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"at most {MAX_PASSWORD_LENGTH} characters are allowed"
    if password.strip() != password:
        return "leading or trailing white space is not allowed"
    return None


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def csrf_token_for(session_token: str) -> str:
    return _b64(hmac.new(session_token.encode("utf-8"), b"callsec-csrf-v1",
                         hashlib.sha256).digest())


def new_totp_secret() -> str:
    return pyotp.random_base32(32)


def totp_step(now: datetime) -> int:
    return int(now.timestamp()) // TOTP_INTERVAL


def totp_code(secret: str, step: int) -> str:
    return str(pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_INTERVAL)
               .generate_otp(step))


def totp_match_step(secret: str, code: str, now: datetime, *,
                    last_step: int | None = None) -> int | None:
    """The time step ``code`` belongs to (current +- drift), if it is newer than
    ``last_step`` (a code is accepted once: replay protection); else None."""
    if len(code) != TOTP_DIGITS or not code.isascii() or not code.isdigit():
        return None
    current = totp_step(now)
    found: int | None = None
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if hmac.compare_digest(totp_code(secret, step), code) and found is None:
            found = step
    if found is None or (last_step is not None and found <= last_step):
        return None
    return found


def provisioning_uri(secret: str, username: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_INTERVAL).provisioning_uri(
        name=username, issuer_name=issuer)


def login_delay(failures: int, *, max_failures: int, first_delay: int, cap: int) -> int:
    """Seconds an account waits after its ``failures``-th failed attempt: none before
    ``max_failures``, then ``first_delay`` doubling per further failure, at most ``cap``."""
    if failures < max_failures:
        return 0
    return min(cap, first_delay << min(failures - max_failures, 40))
