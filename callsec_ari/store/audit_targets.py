"""What an audit target may be: an identifier of the kind its action names (pure).

The audit trail is append-only and kept for years, so a target is never free text: a
customer action names a customer ref, a user action a user name, a key action a KEK version,
anything else a safe identifier (call ids, capture ids, ``call <id>``, ``GET /api/...``).
A target that does not fit (a card number or a password typed into a user-name field, an id
with a digit run) is not stored: :func:`keyed_marker` replaces it with ``hash:`` and 24 hex
digits of an HMAC under the audit key, so the same wrong input yields the same marker (the
entries can still be grouped) but the input cannot be read back.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from callsec_ari.logs import redact_text

USER_NAME = re.compile(r"[a-z][a-z0-9._-]{1,63}")
CUSTOMER_REF = re.compile(r"C-[A-Z0-9]{8,32}")
VAULT_REF = re.compile(r"V-[A-Z0-9]{8,32}")
KEK_VERSION = re.compile(r"kek-\d{4,6}")
#: A keyed marker (``hash:<hex>``, and the login's ``unknown-user:<hex>``): a label, then
#: hex digits with at least one letter (a card number is all digits).
MARKER = re.compile(r"[a-z][a-z-]{0,23}:(?=[0-9a-f]*[a-f])[0-9a-f]{12,64}")
#: Ids callsec makes or Asterisk gives (``CP-1a2b...``, ``1733567890.42``, ``call <id>``,
#: ``GET /api/v1/calls/{call_id}``): letters, digits and a few separators.
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@{}+ -]{0,127}")
#: A digit run this long is a card or account number, never an id ...
_LONG_DIGITS = re.compile(r"\d{13,}")
#: ... except inside the random hex ids callsec makes (capture, verification, data key, user).
GENERATED_ID = re.compile(r"(?<![\w-])(?:CP|AP|VF|dk|u)-[0-9a-f]{16}(?![\w-])")
MARKER_LABEL = b"callsec-audit-target/1\x00"

#: action (exact, or a prefix ending in ".") -> the pattern its target has
KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("customer.", CUSTOMER_REF), ("gdpr.export", CUSTOMER_REF), ("gdpr.erase", CUSTOMER_REF),
    ("vault.", VAULT_REF),
    ("user.", USER_NAME), ("login.", USER_NAME), ("logout", USER_NAME),
    ("session.", USER_NAME),
    ("keys.", KEK_VERSION),
)


def pattern_for(action: str) -> re.Pattern[str]:
    for name, pattern in KINDS:
        if action == name or (name.endswith(".") and action.startswith(name)):
            return pattern
    return SAFE_ID


def fits(action: str, target: str) -> bool:
    """Whether ``target`` may be stored as it is for ``action``."""
    if not target or MARKER.fullmatch(target):
        return True
    if not pattern_for(action).fullmatch(target):
        return False
    rest = GENERATED_ID.sub("", target)  # callsec's own ids are kept whatever their hex
    return _LONG_DIGITS.search(rest) is None and redact_text(rest) == rest


def keyed_marker(value: str, key: bytes | None, label: str = "hash") -> str:
    """``hash:`` + 24 hex digits of HMAC-SHA256(audit key, value). Without a key (an unkeyed
    log, in tests) a bare hash would be reversible for short inputs: ``hash:`` + ``f``s."""
    if key is None:
        return f"{label}:" + "f" * 24
    mac = hmac.new(key, MARKER_LABEL + value.encode("utf-8", "replace"), hashlib.sha256)
    return f"{label}:" + mac.hexdigest()[:24]


def safe_target(action: str, target: str, key: bytes | None) -> str:
    return target if fits(action, target) else keyed_marker(target, key)
