"""Field rules for secure capture: cards, expiry, CVV, postal code, IBAN, national ids.

Check-digit rules are compared with python-stdnum (an independent implementation) on
generated inputs.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from stdnum import iban as std_iban
from stdnum import luhn as std_luhn
from stdnum import numdb
from stdnum.de import idnr as std_idnr
from stdnum.iso7064 import mod_11_10 as std_mod_11_10
from stdnum.nl import bsn as std_bsn
from stdnum.us import ssn as std_ssn

from callsec_ari.capture.fields import (
    BRAND_LENGTHS,
    IBAN_DIGITS,
    CardBrand,
    FieldKind,
    ValidationContext,
    build_iban,
    card_brand,
    iban_check_digits,
    parse_fields,
    spec_for,
    validate,
)
from callsec_ari.capture.national_ids import NATIONAL_ID_VALIDATORS
from callsec_ari.core.errors import InvalidInput

CTX = ValidationContext(year=2026, month=5)


def digit_strings(min_size: int = 0, max_size: int = 24) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=min_size, max_size=max_size)


def luhn_complete(partial: str) -> str:
    return partial + std_luhn.calc_check_digit(partial)


# One prefix per IIN range, with lengths the brand allows.
BRAND_PREFIXES: list[tuple[CardBrand, str]] = [
    (CardBrand.VISA, "4"), (CardBrand.MASTERCARD, "51"), (CardBrand.MASTERCARD, "55"),
    (CardBrand.MASTERCARD, "2221"), (CardBrand.MASTERCARD, "2720"), (CardBrand.AMEX, "34"),
    (CardBrand.AMEX, "37"), (CardBrand.DISCOVER, "6011"), (CardBrand.DISCOVER, "644"),
    (CardBrand.DISCOVER, "649"), (CardBrand.DISCOVER, "65"), (CardBrand.DISCOVER, "622126"),
    (CardBrand.DISCOVER, "622925"), (CardBrand.DINERS, "300"), (CardBrand.DINERS, "305"),
    (CardBrand.DINERS, "36"), (CardBrand.DINERS, "38"), (CardBrand.DINERS, "39"),
    (CardBrand.JCB, "3528"), (CardBrand.JCB, "3589"), (CardBrand.MAESTRO, "5018"),
    (CardBrand.MAESTRO, "5020"), (CardBrand.MAESTRO, "5038"), (CardBrand.MAESTRO, "5893"),
    (CardBrand.MAESTRO, "6304"), (CardBrand.MAESTRO, "6759"), (CardBrand.MAESTRO, "6761"),
    (CardBrand.MAESTRO, "6763"), (CardBrand.UNIONPAY, "620"), (CardBrand.UNIONPAY, "622125"),
    (CardBrand.UNIONPAY, "622926"), (CardBrand.UNIONPAY, "629"), (CardBrand.UNIONPAY, "81"),
]


@st.composite
def valid_cards(draw: st.DrawFn) -> tuple[CardBrand, str]:
    brand, prefix = draw(st.sampled_from(BRAND_PREFIXES))
    length = draw(st.sampled_from(sorted(BRAND_LENGTHS[brand])))
    body = draw(digit_strings(length - 1 - len(prefix), length - 1 - len(prefix)))
    return brand, luhn_complete(prefix + body)


@pytest.mark.parametrize(("pan", "brand"), [
    ("4111111111111111", "visa"), ("4222222222222", "visa"), ("5555555555554444", "mastercard"),
    ("2223003122003222", "mastercard"), ("378282246310005", "amex"),
    ("6011111111111117", "discover"), ("30569309025904", "diners"), ("3530111333300000", "jcb"),
    ("6759649826438453", "maestro"), ("6200000000000005", "unionpay"),
])
def test_published_test_cards_are_accepted_with_their_brand(pan: str, brand: str) -> None:
    result = validate(FieldKind.CARD_NUMBER, pan, CTX)
    assert result.ok and result.brand == brand and result.reason_id is None


@given(valid_cards())
def test_luhn_complete_card_of_any_brand_range_is_accepted(card: tuple[CardBrand, str]) -> None:
    brand, pan = card
    assert validate("card_number", pan, CTX).brand == brand.value
    assert validate("card_number", pan, CTX).ok


@given(valid_cards(), st.integers(min_value=0), st.integers(min_value=1, max_value=9))
def test_a_single_mistyped_digit_fails_luhn(card: tuple[CardBrand, str], where: int,
                                             delta: int) -> None:
    _, pan = card
    index = where % len(pan)
    typo = pan[:index] + str((int(pan[index]) + delta) % 10) + pan[index + 1:]
    result = validate("card_number", typo, CTX)
    assert not result.ok
    assert result.reason_id in {"luhn", "unknown_brand", "length_for_brand"}


def _hand_luhn(digits: str) -> bool:
    """The hand-written check callsec had before it used python-stdnum (the oracle)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


@given(st.sampled_from([p for _, p in BRAND_PREFIXES]), digit_strings(8, 18))
def test_card_check_is_the_hand_written_luhn_on_top_of_the_brand_rules(
        prefix: str, rest: str) -> None:
    pan = (prefix + rest)[:19]
    result = validate("card_number", pan, CTX)
    if result.reason_id in (None, "luhn"):
        assert result.ok == _hand_luhn(pan)


@given(digit_strings(0, 30))
def test_card_length_bounds_are_checked_first(digits: str) -> None:
    reason = validate("card_number", digits, CTX).reason_id
    if len(digits) < 13:
        assert reason == "too_short"
    elif len(digits) > 19:
        assert reason == "too_long"
    else:
        assert reason not in {"too_short", "too_long"}


@pytest.mark.parametrize(("prefix", "brand"), [
    ("622125", "unionpay"), ("622126", "discover"), ("622925", "discover"),
    ("622926", "unionpay"), ("222099", None), ("222100", "mastercard"), ("272099", "mastercard"),
    ("272100", None), ("352799", None), ("352800", "jcb"), ("358999", "jcb"), ("359000", None),
    ("601100", "discover"), ("601200", None), ("501800", "maestro"), ("306000", None),
    ("676000", None), ("676100", "maestro"), ("810000", "unionpay"), ("100000", None),
])
def test_iin_range_edges_pick_the_most_specific_brand(prefix: str, brand: str | None) -> None:
    assert card_brand(prefix) == brand


@given(digit_strings(6, 19))
def test_brand_is_fixed_by_the_first_six_digits(digits: str) -> None:
    assert card_brand(digits) == card_brand(digits[:6])


def test_amex_with_sixteen_digits_fails_the_brand_length_rule() -> None:
    result = validate("card_number", luhn_complete("37" + "0" * 13), CTX)
    assert (result.ok, result.reason_id, result.brand) == (False, "length_for_brand", "amex")


def test_unknown_iin_is_refused() -> None:
    result = validate("card_number", luhn_complete("1" * 15), CTX)
    assert (result.ok, result.reason_id, result.brand) == (False, "unknown_brand", None)


def test_brand_outside_the_allow_list_is_refused_after_luhn() -> None:
    ctx = ValidationContext(year=2026, month=5, allowed_brands=frozenset({"mastercard"}))
    assert validate("card_number", "4111111111111111", ctx).reason_id == "brand_not_accepted"
    assert validate("card_number", "4111111111111112", ctx).reason_id == "luhn"


@pytest.mark.parametrize("kind", list(FieldKind))
@pytest.mark.parametrize(
    "value", ["41111a1111111111", "\uff14\uff11\uff11\uff11", "12 34", "-1234"])
def test_non_digits_are_a_format_error_for_every_field(kind: FieldKind, value: str) -> None:
    assert validate(kind, value, CTX).reason_id == "format"


@pytest.mark.parametrize(("mmyy", "reason"), [
    ("0526", None), ("1226", None), ("0426", "expired"), ("0125", "expired"), ("0546", None),
    ("0646", "too_far"), ("0026", "format"), ("1326", "format"), ("526", "format"),
    ("05260", "format"),
])
def test_expiry_is_valid_through_its_month_and_at_most_twenty_years_ahead(
        mmyy: str, reason: str | None) -> None:
    assert validate("expiry", mmyy, CTX).reason_id == reason


@given(st.integers(2000, 2300), st.integers(1, 12), st.integers(-900, 900))
def test_expiry_accepts_exactly_this_month_to_twenty_years_ahead(year: int, month: int,
                                                                 offset: int) -> None:
    target = year * 12 + month - 1 + offset
    mmyy = f"{target % 12 + 1:02d}{target // 12 % 100:02d}"
    result = validate("expiry", mmyy, ValidationContext(year=year, month=month))
    assert result.ok == (0 <= offset <= 240)
    if not result.ok:
        assert result.reason_id in {"expired", "too_far"}
    if -24 <= offset < 0 and year % 100 >= 2:
        assert result.reason_id == "expired"


def test_cvv_length_follows_the_captured_card_brand() -> None:
    amex, visa = CTX.with_card_brand("amex"), CTX.with_card_brand("visa")
    assert validate("cvv", "1234", amex).ok and validate("cvv", "123", amex).reason_id == "length"
    assert validate("cvv", "123", visa).ok and validate("cvv", "1234", visa).reason_id == "length"
    assert validate("cvv", "123", CTX).ok and validate("cvv", "1234", CTX).ok
    assert validate("cvv", "12", CTX).reason_id == "length"


def test_fixed_length_fields_complete_without_hash_and_open_ones_need_it() -> None:
    assert spec_for("cvv", CTX.with_card_brand("amex")).max_digits == 4
    assert not spec_for("cvv", CTX.with_card_brand("visa")).needs_terminator
    assert spec_for("cvv", CTX).needs_terminator
    card = spec_for("card_number", CTX)
    assert (card.min_digits, card.max_digits, card.needs_terminator) == (13, 19, True)
    assert card.prompt == "callsec/enter-card-number"
    assert spec_for("iban", CTX).max_digits == 20 and not spec_for("iban", CTX).needs_terminator
    assert spec_for("national_id", CTX).max_digits == 11
    assert spec_for("postal_code", CTX).prompt == "callsec/enter-postal-code"


def test_postal_code_length_follows_the_configured_country_format() -> None:
    assert validate("postal_code", "10115", CTX).ok
    assert validate("postal_code", "1011", CTX).reason_id == "length"
    four = ValidationContext(year=2026, month=5, postal_code_format="at")
    assert validate("postal_code", "1010", four).ok
    assert spec_for("postal_code", four).max_digits == 4


# --- IBAN -----------------------------------------------------------------------------------

def test_known_german_iban_is_accepted_and_built() -> None:
    assert validate("iban", "89370400440532013000", CTX).ok
    assert build_iban("de", "89370400440532013000") == "DE89370400440532013000"


def test_iban_table_matches_the_registry_and_lists_only_numeric_bbans() -> None:
    registry = numdb.get("iban")
    for country, digits in IBAN_DIGITS.items():
        bban = registry.info(country)[0][1]["bban"]
        parts = [part for part in bban.split("n") if part]
        assert all(part.endswith("!") for part in parts), country
        assert 2 + sum(int(part[:-1]) for part in parts) == digits, country


@st.composite
def ibans(draw: st.DrawFn) -> tuple[str, str]:
    country = draw(st.sampled_from(sorted(IBAN_DIGITS)))
    size = IBAN_DIGITS[country] - 2
    bban = draw(digit_strings(size, size))
    return country, iban_check_digits(country, bban) + bban


@given(ibans())
def test_iban_with_computed_check_digits_is_valid_here_and_for_stdnum(
        iban: tuple[str, str]) -> None:
    country, digits = iban
    assert validate("iban", digits, ValidationContext(year=2026, month=5, iban_country=country)).ok
    assert std_iban.is_valid(build_iban(country, digits), check_country=False)


@given(ibans(), st.integers(min_value=0), st.integers(1, 9))
def test_a_single_mistyped_iban_digit_fails_the_checksum(iban: tuple[str, str], where: int,
                                                         delta: int) -> None:
    country, digits = iban
    index = where % len(digits)
    typo = digits[:index] + str((int(digits[index]) + delta) % 10) + digits[index + 1:]
    ctx = ValidationContext(year=2026, month=5, iban_country=country)
    assert validate("iban", typo, ctx).reason_id == "checksum"


@given(st.sampled_from(sorted(IBAN_DIGITS)), st.data())
def test_iban_checksum_agrees_with_stdnum(country: str, data: st.DataObject) -> None:
    size = IBAN_DIGITS[country]
    digits = data.draw(digit_strings(size, size))
    ours = validate("iban", digits, ValidationContext(year=2026, month=5, iban_country=country))
    theirs = std_iban.is_valid(country + digits, check_country=False)
    assert ours.ok == (theirs and digits[:2] not in {"00", "01", "99"})


@given(st.sampled_from(sorted(IBAN_DIGITS)), st.data())
def test_iban_is_stdnum_mod_97_with_check_digits_02_to_98_only(
        country: str, data: st.DataObject) -> None:
    size = IBAN_DIGITS[country]
    digits = data.draw(st.one_of(digit_strings(size, size), st.sampled_from(
        ["00", "01", "99"]).map(lambda check: check + "0" * (size - 2))))
    ours = validate("iban", digits, ValidationContext(year=2026, month=5, iban_country=country))
    number = digits[2:] + str(int("".join(str(ord(c) - 55) for c in country))) + digits[:2]
    assert ours.ok == (int(number) % 97 == 1 and 2 <= int(digits[:2]) <= 98)


def test_check_digits_01_and_99_are_refused_although_mod_97_holds() -> None:
    bbans = (f"{n:018d}" for n in range(10_000))
    for wanted, alias in (("98", "01"), ("02", "99")):
        bban = next(b for b in bbans if iban_check_digits("DE", b) == wanted)
        assert validate("iban", wanted + bban, CTX).ok
        assert std_iban.is_valid("DE" + alias + bban, check_country=False)
        assert validate("iban", alias + bban, CTX).reason_id == "checksum"


def test_iban_length_and_country_are_checked() -> None:
    assert validate("iban", "8937040044053201300", CTX).reason_id == "length"
    france = ValidationContext(year=2026, month=5, iban_country="FR")
    assert validate("iban", "1420041010050500013", france).reason_id == "country_unsupported"
    assert spec_for("iban", france).needs_terminator


def test_build_iban_refuses_bad_input_without_echoing_it() -> None:
    for country, digits in [("FR", "1420041010050500013"), ("DE", "8937x400"), ("DE", "")]:
        with pytest.raises(InvalidInput) as caught:
            build_iban(country, digits)
        assert not any(char.isdigit() for char in str(caught.value))


# --- national ids ---------------------------------------------------------------------------

def id_ctx(kind: str) -> ValidationContext:
    return ValidationContext(year=2026, month=5, national_id_kind=kind)


@st.composite
def steuer_id_heads(draw: st.DrawFn) -> str:
    """Ten digits, first not 0, one digit twice or three times, the others at most once."""
    digits = draw(st.permutations("0123456789"))
    copies = draw(st.sampled_from([1, 2]))
    source = draw(st.integers(0, 9))
    targets = draw(st.lists(st.integers(0, 9).filter(lambda i: i != source),
                            min_size=copies, max_size=copies, unique=True))
    for target in targets:
        digits[target] = digits[source]
    head = "".join(digits)
    assume(head[0] != "0")
    return head


@given(steuer_id_heads())
def test_steuer_id_with_a_correct_check_digit_matches_stdnum(head: str) -> None:
    number = head + std_mod_11_10.calc_check_digit(head)
    triple_in_a_row = any(head[i] == head[i + 1] == head[i + 2] for i in range(8))
    result = validate("national_id", number, id_ctx("de_steuer_id"))
    assert std_idnr.is_valid(number)
    assert result.ok == (not triple_in_a_row)
    if triple_in_a_row:
        assert result.reason_id == "format"


@given(digit_strings(11, 11))
def test_steuer_id_accepts_nothing_stdnum_refuses(number: str) -> None:
    if validate("national_id", number, id_ctx("de_steuer_id")).ok:
        assert std_idnr.is_valid(number)


def _hand_steuer_id(digits: str) -> str | None:
    """callsec's hand-written IdNr check before python-stdnum (the oracle for reason ids)."""
    head = digits[:10]
    repeated = [n for n in (head.count(d) for d in set(head)) if n > 1]
    if head[0] == "0" or len(repeated) != 1 or repeated[0] not in (2, 3) \
            or any(head[i] == head[i + 1] == head[i + 2] for i in range(8)):
        return "format"
    return None if std_mod_11_10.is_valid(digits) else "checksum"


@given(st.one_of(digit_strings(11, 11), steuer_id_heads().map(
    lambda head: head + std_mod_11_10.calc_check_digit(head))))
def test_steuer_id_reasons_are_those_of_the_hand_written_check(number: str) -> None:
    """stdnum plus the three-in-a-row rule answers as the old code did, reason ids included."""
    reason = validate("national_id", number, id_ctx("de_steuer_id")).reason_id
    assert reason == _hand_steuer_id(number)
    if reason is None:
        assert std_idnr.is_valid(number)


@pytest.mark.parametrize(("number", "reason"), [
    ("36574261809", None), ("86095742719", None), ("36574261800", "checksum"),
    ("06574261809", "format"), ("11123456780", "format"), ("12345678901", "format"),
    ("1234567890", "length"), ("112345678903", "length"),
])
def test_steuer_id_examples(number: str, reason: str | None) -> None:
    assert validate("national_id", number, id_ctx("de_steuer_id")).reason_id == reason


@given(digit_strings(9, 9))
def test_bsn_and_ssn_agree_with_stdnum(number: str) -> None:
    assert validate("national_id", number, id_ctx("nl_bsn")).ok == std_bsn.is_valid(number)
    assert validate("national_id", number, id_ctx("us_ssn")).ok == std_ssn.is_valid(number)


@pytest.mark.parametrize(("kind", "number", "reason"), [
    ("nl_bsn", "111222333", None), ("nl_bsn", "111222334", "checksum"),
    ("nl_bsn", "000000000", "format"), ("us_ssn", "536904399", None),
    ("us_ssn", "000904399", "format"), ("us_ssn", "666904399", "format"),
    ("us_ssn", "936904399", "format"), ("us_ssn", "536004399", "format"),
    ("us_ssn", "536900000", "format"), ("us_ssn", "078051120", "format"),
    ("us_ssn", "53690439", "length"),
])
def test_bsn_and_ssn_examples(kind: str, number: str, reason: str | None) -> None:
    assert validate("national_id", number, id_ctx(kind)).reason_id == reason


def test_national_id_registry_is_pluggable_and_unknown_kinds_are_refused() -> None:
    assert set(NATIONAL_ID_VALIDATORS) == {"de_steuer_id", "nl_bsn", "us_ssn"}
    assert NATIONAL_ID_VALIDATORS["nl_bsn"]("111222333") is None
    assert validate("national_id", "123", id_ctx("fr_insee")).reason_id == "kind_unsupported"


# --- field lists ----------------------------------------------------------------------------

def test_field_lists_parse_in_order_without_repeats() -> None:
    assert parse_fields("card_number, expiry,cvv,cvv") == (
        FieldKind.CARD_NUMBER, FieldKind.EXPIRY, FieldKind.CVV)


@pytest.mark.parametrize("text", ["", "card_number,pin", " , "])
def test_unknown_or_missing_fields_are_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_fields(text)
