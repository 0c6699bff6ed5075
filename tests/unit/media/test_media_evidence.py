"""Signed leak evidence: round trip, any tampering fails, JSON storage does not break it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callsec_ari.core.errors import InvalidInput
from callsec_ari.media.evidence import Evidence, sign_evidence, verify_evidence

KEY = b"k" * 32
EVIDENCE = Evidence(frames_relayed=1500, frames_flattened=42, digits_detected=19,
                    leaked_tone_frames=0, packets_dropped=3, agent_frames_relayed=1490,
                    max_hold_ms=21.4567, mode="tone")


def test_signed_evidence_verifies_and_has_the_documented_fields() -> None:
    signed = sign_evidence(EVIDENCE, capture_id="cap-1", key=KEY)
    assert set(signed) == {"capture_id", "evidence", "alg", "signature"}
    assert signed["alg"] == "HMAC-SHA256"
    assert signed["evidence"] == {**EVIDENCE.as_dict(), "max_hold_ms": 21.457}
    assert verify_evidence(signed, KEY)


def test_signature_survives_a_json_round_trip_with_integral_floats() -> None:
    signed = sign_evidence(Evidence(max_hold_ms=20.0), capture_id="cap-2", key=KEY)
    stored = json.loads(json.dumps(signed).replace("20.0", "20"))
    assert stored["evidence"]["max_hold_ms"] == 20
    assert verify_evidence(stored, KEY)


def test_wrong_key_fails() -> None:
    assert not verify_evidence(sign_evidence(EVIDENCE, capture_id="c", key=KEY), b"x" * 32)


@pytest.mark.parametrize(("field", "value"), [
    ("frames_relayed", 1501), ("frames_flattened", 41), ("digits_detected", 18),
    ("leaked_tone_frames", 1), ("packets_dropped", 0), ("agent_frames_relayed", 1),
    ("max_hold_ms", 21.456), ("mode", "silence"),
])
def test_tampering_any_evidence_field_fails(field: str, value: object) -> None:
    signed: dict[str, Any] = sign_evidence(EVIDENCE, capture_id="cap-3", key=KEY)
    signed["evidence"] = {**signed["evidence"], field: value}
    assert not verify_evidence(signed, KEY)


@pytest.mark.parametrize(("field", "value"), [
    ("capture_id", "cap-4"), ("alg", "HMAC-SHA1"), ("signature", "00" * 32),
    ("evidence", {}), ("signature", 5), ("capture_id", None), ("evidence", "x"),
])
def test_tampering_an_envelope_field_fails(field: str, value: object) -> None:
    signed: dict[str, object] = sign_evidence(EVIDENCE, capture_id="cap-3", key=KEY)
    signed[field] = value
    assert not verify_evidence(signed, KEY)


def test_extra_or_missing_fields_fail() -> None:
    signed: dict[str, Any] = sign_evidence(EVIDENCE, capture_id="c", key=KEY)
    assert not verify_evidence({**signed, "note": "x"}, KEY)
    assert not verify_evidence({k: v for k, v in signed.items() if k != "alg"}, KEY)
    body = dict(signed["evidence"])
    body.pop("mode")
    assert not verify_evidence({**signed, "evidence": body}, KEY)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3", None, float("nan")])
def test_evidence_from_dict_rejects_non_counts(bad: object) -> None:
    with pytest.raises(InvalidInput):
        Evidence.from_dict({**EVIDENCE.as_dict(), "frames_relayed": bad})
    assert not verify_evidence({**sign_evidence(EVIDENCE, capture_id="c", key=KEY),
                                "evidence": {**EVIDENCE.as_dict(), "frames_relayed": bad}}, KEY)


def test_empty_key_cannot_sign_or_verify() -> None:
    with pytest.raises(InvalidInput):
        sign_evidence(EVIDENCE, capture_id="c", key=b"")
    assert not verify_evidence(sign_evidence(EVIDENCE, capture_id="c", key=KEY), b"")


@given(counts=st.lists(st.integers(0, 10**9), min_size=6, max_size=6),
       hold=st.floats(0, 1e4, allow_nan=False), mode=st.sampled_from(["silence", "tone"]),
       capture_id=st.text(max_size=40))
def test_round_trip_for_any_evidence(counts: list[int], hold: float, mode: str,
                                     capture_id: str) -> None:
    evidence = Evidence(frames_relayed=counts[0], frames_flattened=counts[1],
                        digits_detected=counts[2], leaked_tone_frames=counts[3],
                        packets_dropped=counts[4], agent_frames_relayed=counts[5],
                        max_hold_ms=hold, mode=mode)  # type: ignore[arg-type]
    signed = sign_evidence(evidence, capture_id=capture_id, key=KEY)
    assert verify_evidence(json.loads(json.dumps(signed)), KEY)
    assert Evidence.from_dict(signed["evidence"]) == Evidence.from_dict(  # type: ignore[arg-type]
        evidence.as_dict())
