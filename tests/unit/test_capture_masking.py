"""What agents, logs and event streams see of a capture: counts, brand, a short tail."""

from __future__ import annotations

import copy
import pickle
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum import luhn as std_luhn

from callsec_ari.capture.fields import FieldKind, ValidationContext, iban_check_digits, validate
from callsec_ari.core.digits import SensitiveDigits
from callsec_ari.core.masking import MaskedResult, mask_result

CTX = ValidationContext(year=2026, month=5)
DIGIT_RUN = re.compile(r"\d+")


def digit_strings(min_size: int = 0, max_size: int = 24) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=min_size, max_size=max_size)


@st.composite
def keyed_values(draw: st.DrawFn) -> tuple[FieldKind, str]:
    """Any field with random digits, plus valid cards and IBANs so the 'valid' paths run."""
    kind = draw(st.sampled_from(list(FieldKind)))
    choice = draw(st.integers(0, 2))
    if choice == 1 and kind is FieldKind.CARD_NUMBER:
        prefix = draw(st.sampled_from(["4", "51", "2221", "6011", "3528", "622126", "62"]))
        body = draw(digit_strings(15 - len(prefix), 15 - len(prefix)))
        return kind, prefix + body + std_luhn.calc_check_digit(prefix + body)
    if choice == 1 and kind is FieldKind.IBAN:
        bban = draw(digit_strings(18, 18))
        return kind, iban_check_digits("DE", bban) + bban
    return kind, draw(digit_strings(0, 24))


def rendered(masked: MaskedResult) -> list[str]:
    return [str(masked), repr(masked), str(masked.to_json())]


def allowed_runs(kind: FieldKind, digits: str, result: MaskedResult | None) -> set[str]:
    allowed = {str(len(digits))}
    if result is not None and result.valid and kind is FieldKind.CARD_NUMBER:
        allowed.add(digits[-4:])
    if result is not None and result.valid and kind is FieldKind.IBAN:
        allowed.add(digits[-2:])
    if result is not None and result.valid and kind is FieldKind.ROUTING_NUMBER:
        allowed.add(digits[-4:])
    if result is not None and result.valid and kind is FieldKind.ACCOUNT_NUMBER \
            and len(digits) >= 8:
        allowed.add(digits[-4:])  # never more than half of an account number
    return allowed


@given(keyed_values())
def test_masked_output_shows_no_digits_beyond_the_count_and_the_permitted_tail(
        value: tuple[FieldKind, str]) -> None:
    kind, digits = value
    validation = validate(kind, digits, CTX)
    result = mask_result(kind, digits, validation, country="DE")
    for text in rendered(result):
        assert set(DIGIT_RUN.findall(text)) <= allowed_runs(kind, digits, result), text


@given(keyed_values())
def test_at_most_four_digits_of_a_card_and_two_of_an_iban_are_ever_shown(
        value: tuple[FieldKind, str]) -> None:
    kind, digits = value
    result = mask_result(kind, digits, validate(kind, digits, CTX), country="DE")
    limit = {FieldKind.CARD_NUMBER: 4, FieldKind.IBAN: 2, FieldKind.ROUTING_NUMBER: 4,
             FieldKind.ACCOUNT_NUMBER: 4 if len(digits) >= 8 else 0}.get(kind, 0)
    assert len(result.last_digits) <= limit
    assert result.last_digits == (digits[-limit:] if result.last_digits else "")


def test_valid_card_result_shows_brand_and_last_four() -> None:
    pan = "5555555555554444"
    result = mask_result("card_number", pan, validate("card_number", pan, CTX))
    assert (result.brand, result.last_digits, result.valid) == ("mastercard", "4444", True)
    assert str(result) == "card_number mastercard ••••4444 (16 digits, valid)"


def test_invalid_card_result_shows_no_digits() -> None:
    pan = "4111111111111112"
    result = mask_result("card_number", pan, validate("card_number", pan, CTX))
    assert (result.valid, result.reason_id, result.last_digits) == (False, "luhn", "")
    assert str(result) == "card_number visa (16 digits, invalid: luhn)"


def test_valid_iban_result_shows_country_and_last_two() -> None:
    digits = "89370400440532013000"
    result = mask_result("iban", digits, validate("iban", digits, CTX), country="de")
    assert (result.country, result.last_digits) == ("DE", "00")
    assert str(result) == "iban DE ••••00 (20 digits, valid)"


@pytest.mark.parametrize(("kind", "digits"), [
    ("cvv", "123"), ("expiry", "0527"), ("postal_code", "10115"), ("national_id", "36574261809"),
])
def test_other_fields_show_only_length_and_validity(kind: str, digits: str) -> None:
    result = mask_result(kind, digits, validate(kind, digits, CTX), country="DE")
    assert result.valid and result.last_digits == "" and result.brand is None
    assert result.country is None
    assert result.to_json()["length"] == len(digits)


# --- SensitiveDigits ------------------------------------------------------------------------

def holder_of(digits: str) -> SensitiveDigits:
    holder = SensitiveDigits()
    for digit in digits:
        holder.append(digit)
    return holder


@given(digit_strings(0, 32))
def test_holder_reveals_what_was_keyed_and_prints_only_the_count(digits: str) -> None:
    holder = holder_of(digits)
    assert holder.reveal() == digits and len(holder) == len(digits)
    assert str(holder) == repr(holder) == f"SensitiveDigits(<{len(digits)} digits>)"


@given(digit_strings(0, 24), st.sampled_from(list(FieldKind)))
def test_masking_a_holder_equals_masking_its_digits(digits: str, kind: FieldKind) -> None:
    holder = holder_of(digits)
    validation = validate(kind, digits, CTX)
    assert mask_result(kind, holder, validation) == mask_result(kind, digits, validation)


def test_wipe_overwrites_the_buffer_and_ends_the_holder() -> None:
    holder = holder_of("4111111111111111")
    holder.wipe()
    assert holder.wiped and len(holder) == 0
    assert bytes(holder._buffer) == bytes(len(holder._buffer))
    assert repr(holder) == "SensitiveDigits(<wiped>)"
    for use in (holder.reveal, lambda: holder.append("1"), holder.clear):
        with pytest.raises(RuntimeError):
            use()


def test_take_hands_the_value_over_once_and_wipes() -> None:
    cvv = holder_of("737")
    assert cvv.take() == "737"
    assert cvv.wiped and bytes(cvv._buffer) == bytes(len(cvv._buffer))


def test_clear_restarts_entry_and_zeroes_what_was_typed() -> None:
    holder = holder_of("1234")
    holder.clear()
    assert len(holder) == 0 and not holder.wiped
    assert bytes(holder._buffer) == bytes(len(holder._buffer))
    holder.append("9")
    assert holder.reveal() == "9"


@pytest.mark.parametrize("bad", ["", "12", "a", "#", "*", "٣"])
def test_holder_accepts_only_single_ascii_digits_and_does_not_echo_them(bad: str) -> None:
    with pytest.raises(ValueError, match=r"^not a single digit$"):
        SensitiveDigits().append(bad)


def test_holder_refuses_to_grow_past_capacity() -> None:
    holder = SensitiveDigits(capacity=2)
    holder.append("1")
    holder.append("2")
    with pytest.raises(ValueError, match="capacity"):
        holder.append("3")


def test_holder_cannot_be_pickled_or_copied() -> None:
    holder = holder_of("1234")
    with pytest.raises(TypeError):
        pickle.dumps(holder)
    with pytest.raises(TypeError):
        copy.copy(holder)


def test_holder_prefix_and_tail_show_no_more_than_masking_allows() -> None:
    holder = holder_of("378282246310005")
    assert holder.tail(4) == "0005" and holder.prefix(6) == "378282"
    with pytest.raises(ValueError):
        holder.tail(5)
    with pytest.raises(ValueError):
        holder.prefix(7)


def test_holder_view_is_read_only_and_same_as_compares_without_a_copy() -> None:
    holder = holder_of("4111")
    view = holder.view()
    assert view.readonly and bytes(view) == b"4111"
    with pytest.raises(TypeError):
        view[0] = 0  # type: ignore[index]
    assert holder.same_as(holder_of("4111")) and not holder.same_as(holder_of("4112"))
