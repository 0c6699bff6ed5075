"""What the API may show of calls and progress events (pure): never digit runs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from callsec_ari.access.roles import Owner
from callsec_ari.runtime.bus import safe_payload
from callsec_ari.web.views import masked_caller, owner_of


def test_masked_caller_keeps_mask_phone_output_and_drops_anything_longer() -> None:
    assert masked_caller("+49…78") == "+49…78"
    assert masked_caller("+4915112345678") is None
    assert masked_caller(None) is None and masked_caller(12) is None


@given(st.text(alphabet="0123456789", min_size=5, max_size=20))
def test_free_text_digit_runs_never_pass(digits: str) -> None:
    out = safe_payload({"note": f"typed {digits}", "last_digits": digits, "dots": "••"})
    assert digits not in str(out)
    assert out["dots"] == "••"


def test_payload_keeps_counts_brand_and_a_short_tail() -> None:
    out = safe_payload({"field": "card_number", "count": 16, "brand": "visa", "valid": True,
                        "last_digits": "1111", "nested": {"pan": "4111"}, "list": [1]})
    assert out == {"field": "card_number", "count": 16, "brand": "visa", "valid": True,
                   "last_digits": "1111"}


def test_owner_of_resolves_the_team_of_the_endpoint_user() -> None:
    class U:
        team = "blue"
    owners = {"agent100": U()}
    assert owner_of("PJSIP/agent100", owners) == Owner("agent100", "blue")  # type: ignore[arg-type]
    assert owner_of("agent109", owners) == Owner("agent109", None)  # type: ignore[arg-type]
    assert owner_of(None, owners) == Owner(None, None)  # type: ignore[arg-type]
