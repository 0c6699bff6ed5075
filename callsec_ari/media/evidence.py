"""Per-capture leak evidence: what the talk-through relay did, signed with HMAC-SHA256.

The agent desk shows "tones masked: 14, leaked: 0"; a PCI assessor gets the signed summary with
the capture record. The signature covers the canonical JSON (sorted keys, no whitespace, ASCII)
of ``{"alg", "capture_id", "evidence"}``. :func:`verify_evidence` rebuilds the evidence through
:meth:`Evidence.from_dict` first, so a summary that went through a JSON column (where ``12.0``
may come back as ``12``) still verifies, while any changed value, missing or extra field fails.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Literal

from callsec_ari.core.errors import InvalidInput
from callsec_ari.core.signing import mac_hex, mac_matches

ALG = "HMAC-SHA256"
_COUNTERS = ("frames_relayed", "frames_flattened", "digits_detected", "leaked_tone_frames",
             "packets_dropped", "agent_frames_relayed")


@dataclass(frozen=True, kw_only=True)
class Evidence:
    frames_relayed: int = 0          # caller frames sent to the agent side (flattened included)
    frames_flattened: int = 0        # of those, replaced by silence or the flat tone
    digits_detected: int = 0         # in-band key presses seen on the caller side
    leaked_tone_frames: int = 0      # tone frames the independent scan found in the output
    packets_dropped: int = 0         # malformed, not PCMU, late, duplicate, foreign source
    agent_frames_relayed: int = 0    # agent -> caller packets forwarded
    max_hold_ms: float = 0.0         # longest a caller frame waited between arrival and send
    mode: Literal["silence", "tone"] = "silence"

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["max_hold_ms"] = round(self.max_hold_ms, 3)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Evidence:
        """The inverse of :meth:`as_dict`; InvalidInput for a missing, extra or bad field."""
        names = {f.name for f in fields(cls)}
        if set(data) != names:
            raise InvalidInput("evidence fields do not match", details={"field": "evidence"})
        counters: dict[str, int] = {}
        for name in _COUNTERS:
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or value < 0 or value != int(value):
                raise InvalidInput("evidence counter is not a count", details={"field": name})
            counters[name] = int(value)
        hold, mode = data["max_hold_ms"], data["mode"]
        if isinstance(hold, bool) or not isinstance(hold, int | float) \
                or not math.isfinite(hold) or hold < 0:
            raise InvalidInput("evidence hold time is not a duration",
                               details={"field": "max_hold_ms"})
        if mode not in ("silence", "tone"):
            raise InvalidInput("evidence mode is unknown", details={"field": "mode"})
        return cls(**counters, max_hold_ms=round(float(hold), 3), mode=mode)


def _canonical(capture_id: str, evidence: Evidence) -> bytes:
    body = {"alg": ALG, "capture_id": capture_id, "evidence": evidence.as_dict()}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def sign_evidence(evidence: Evidence, *, capture_id: str, key: bytes) -> dict[str, object]:
    """``{"capture_id", "evidence", "alg", "signature"}`` (signature: hex HMAC-SHA256)."""
    if not key:
        raise InvalidInput("evidence signing key is empty", details={"field": "key"})
    return {"capture_id": capture_id, "evidence": evidence.as_dict(), "alg": ALG,
            "signature": mac_hex(key, _canonical(capture_id, evidence))}


def verify_evidence(signed: Mapping[str, object], key: bytes) -> bool:
    """True only for an unaltered summary signed with ``key``; never raises on bad input."""
    if not key or set(signed) != {"capture_id", "evidence", "alg", "signature"}:
        return False
    capture_id, body, alg, signature = (signed["capture_id"], signed["evidence"],
                                        signed["alg"], signed["signature"])
    if alg != ALG or not isinstance(capture_id, str) or not isinstance(signature, str) \
            or not isinstance(body, Mapping):
        return False
    try:
        evidence = Evidence.from_dict(body)
    except InvalidInput:
        return False
    if evidence.as_dict() != dict(body):  # e.g. a hold time with more than 3 decimals
        return False
    return mac_matches(key, _canonical(capture_id, evidence), signature)
