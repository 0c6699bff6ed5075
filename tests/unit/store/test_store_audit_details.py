"""Audit details are canonical JSON and never carry digit runs (numbers typed by callers)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from callsec_ari.store.audit import canonical_details


def test_details_are_sorted_compact_json() -> None:
    assert canonical_details({"b": 1, "a": [True, None]}) == '{"a":[true,null],"b":1}'
    assert canonical_details(None) == "{}"


@given(st.text("0123456789", min_size=4, max_size=19))
def test_digit_runs_in_free_text_are_blanked(digits: str) -> None:
    text = canonical_details({"reason": f"caller said {digits} twice", "nested": [digits]})
    assert digits not in text
    assert json.loads(text)["reason"].startswith("caller said <redacted>")


def test_refs_and_counts_survive() -> None:
    details = {"ref": "C-ABCD2345EFGH6789", "count": 12345, "kind": "card_number"}
    assert json.loads(canonical_details(details)) == details


def test_long_text_is_truncated() -> None:
    assert len(json.loads(canonical_details({"reason": "x" * 5000}))["reason"]) == 200
