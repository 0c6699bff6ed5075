"""New field kinds (#18.2): US ABA routing numbers (python-stdnum's check digit), US bank
account numbers (configurable length), postal codes by country format (US ZIP / ZIP+4, DE PLZ);
their masking and prompts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum.us import rtn

from callsec_ari.capture.fields import (
    FieldKind,
    ValidationContext,
    parse_fields,
    spec_for,
    validate,
)
from callsec_ari.capture.formats import ROUTING_PREFIXES
from callsec_ari.capture.prompts import error_prompt
from callsec_ari.core.masking import mask_result
from callsec_ari.core.masking import mask_stored as vault_mask

CTX = ValidationContext(year=2026, month=5)
US = ValidationContext(year=2026, month=5, postal_code_format="us")


@st.composite
def routing_numbers(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(sorted(ROUTING_PREFIXES)))
    body = f"{prefix:02d}" + draw(st.text("0123456789", min_size=6, max_size=6))
    return body + rtn.calc_check_digit(body)


@given(routing_numbers())
def test_valid_aba_routing_numbers_are_accepted(number: str) -> None:
    assert validate("routing_number", number, CTX).ok


@given(routing_numbers(), st.integers(0, 8), st.integers(1, 9))
def test_one_changed_digit_of_a_routing_number_is_refused(number: str, where: int,
                                                          delta: int) -> None:
    changed = number[:where] + str((int(number[where]) + delta) % 10) + number[where + 1:]
    result = validate("routing_number", changed, CTX)
    assert not result.ok and result.reason_id in ("checksum", "format")


def test_routing_number_known_values_and_lengths() -> None:
    assert validate("routing_number", "111000025", CTX).ok  # stdnum's example
    assert validate("routing_number", "112000025", CTX).reason_id == "checksum"
    assert validate("routing_number", "11100002", CTX).reason_id == "length"
    assert validate("routing_number", "991000027", CTX).reason_id == "format"  # no such prefix
    spec = spec_for("routing_number", CTX)
    assert (spec.min_digits, spec.max_digits, spec.needs_terminator) == (9, 9, False)
    assert spec.prompt == "callsec/enter-routing-number"


@given(st.text("0123456789", min_size=4, max_size=17).filter(lambda s: int(s) != 0))
def test_account_numbers_within_the_bounds_are_accepted(number: str) -> None:
    assert validate("account_number", number, CTX).ok


@pytest.mark.parametrize("number", ["123", "123456789012345678", "0000000"])
def test_account_numbers_outside_the_bounds_or_all_zero_are_refused(number: str) -> None:
    assert not validate("account_number", number, CTX).ok


def test_account_number_bounds_are_configurable() -> None:
    ctx = ValidationContext(year=2026, month=5, account_min_digits=8, account_max_digits=10)
    assert validate("account_number", "12345678", ctx).ok
    assert validate("account_number", "1234567", ctx).reason_id == "length"
    spec = spec_for("account_number", ctx)
    assert (spec.min_digits, spec.max_digits, spec.needs_terminator) == (8, 10, True)


@given(st.text("0123456789", min_size=0, max_size=12))
def test_us_zip_is_five_or_nine_digits(number: str) -> None:
    assert validate("postal_code", number, US).ok is (len(number) in (5, 9))


@given(st.text("0123456789", min_size=0, max_size=12))
def test_german_plz_is_five_digits_not_starting_00(number: str) -> None:
    expected = len(number) == 5 and not number.startswith("00")
    assert validate("postal_code", number, CTX).ok is expected


def test_us_zip_asks_for_the_zip_code_and_needs_the_hash_key() -> None:
    spec = spec_for("postal_code", US)
    assert (spec.min_digits, spec.max_digits, spec.needs_terminator) == (5, 9, True)
    assert spec.prompt == "callsec/enter-zip-code"
    assert spec_for("postal_code", CTX).prompt == "callsec/enter-postal-code"


def test_new_kinds_parse_from_an_agi_field_list() -> None:
    assert parse_fields("postal_code,routing_number,account_number") == (
        FieldKind.POSTAL_CODE, FieldKind.ROUTING_NUMBER, FieldKind.ACCOUNT_NUMBER)


def test_masks_show_at_most_the_last_four_and_never_a_postal_code() -> None:
    ok = validate("routing_number", "111000025", CTX)
    assert mask_result("routing_number", "111000025", ok).last_digits == "0025"
    long_acct = mask_result("account_number", "123456789012", validate(
        "account_number", "123456789012", CTX))
    assert long_acct.last_digits == "9012"
    short = mask_result("account_number", "123456", validate("account_number", "123456", CTX))
    assert short.last_digits == ""  # four of six digits would show most of it
    zip_mask = mask_result("postal_code", "941031234", validate("postal_code", "941031234", US))
    assert zip_mask.last_digits == "" and "9410" not in str(zip_mask)
    assert vault_mask("routing_number", "111000025") == "•••• 0025"
    assert vault_mask("account_number", "123456") == "<6 characters>"


def test_each_error_kind_has_its_prompt() -> None:
    assert error_prompt("checksum") == error_prompt("luhn") == "entry-check-failed"
    assert error_prompt("length") == "entry-wrong-length"
    assert error_prompt("too_short") == "entry-too-short"
    assert error_prompt("brand_not_accepted") == "card-not-accepted"
    assert error_prompt("something_else") == "invalid-entry"


def test_an_amex_cvv_has_its_own_prompt() -> None:
    assert spec_for("cvv", CTX.with_card_brand("amex")).prompt == "callsec/enter-cvv-amex"
    assert spec_for("cvv", CTX.with_card_brand("visa")).prompt == "callsec/enter-cvv"


# --- the agent's keypad code *4 ([capture] feature_bank_us), wired from the settings ----------

def test_agent_keypad_star_four_asks_routing_then_account_number_and_re_asks_a_bad_aba() -> None:
    from callsec_ari.capture import protocol as cp
    from callsec_ari.config import Settings
    from callsec_ari.connect.flow import ConnectFlow, ConnectOptions
    from callsec_ari.core import commands as c
    from callsec_ari.core.events import CallStarted, DtmfReceived, LegAnswered
    from callsec_ari.flows import FlowRegistry
    from callsec_ari.verification.flow import VerificationFlow
    from callsec_ari.verification.options import VerificationOptions

    started = CallStarted(flow="connect", caller_number="+4915112345678")
    captures = FlowRegistry(Settings()).capture_options(started)
    verification = VerificationFlow("k1", VerificationOptions(require_code="never",
                                                              continue_after=False))
    flow = ConnectFlow("k1", verification, ConnectOptions(dial_string="PJSIP/agent100",
                                                          captures=captures))
    flow.handle(started)
    flow.handle(LegAnswered(leg="agent"))

    def keys(digits: str, leg: str = "caller") -> list[c.Command]:
        out: list[c.Command] = []
        for i, key in enumerate(digits):
            out += flow.handle(DtmfReceived(digit=key, leg=leg, at=10.0 + i * 0.2))
        return out

    keys("*4", leg="agent")
    assert flow.capture is not None
    assert flow.capture.request.fields == ("routing_number", "account_number")
    out = flow.handle(cp.RecordingMuted(mute=True))
    media = [m for x in out if isinstance(x, c.Play) for m in x.media]
    assert "sound:callsec/enter-routing-number" in media
    out = keys("111000026")  # check digit off by one
    media = [m for x in out if isinstance(x, c.Play) for m in x.media]
    assert media[:2] == ["sound:callsec/entry-check-failed", "sound:callsec/enter-routing-number"]
    out = keys("111000025")
    media = [m for x in out if isinstance(x, c.Play) for m in x.media]
    assert "sound:callsec/enter-account-number" in media
    published = [dict(x.payload) for x in out if isinstance(x, c.Publish)]
    done = next(p for p in published if p.get("stage") == "field_done")
    assert done["last_digits"] == "0025" and "111000025" not in repr(published)
