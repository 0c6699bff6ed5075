"""Blind index: E.164 normalisation, domain separation, no echo of invalid numbers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callsec_ari.core.errors import InvalidInput
from callsec_ari.store.blind import BlindIndex, normalise_phone

BI = BlindIndex(b"k" * 32, "DE")


@pytest.mark.parametrize("notation", [
    "+49 151 23456789", "015123456789", "0049 151 2345 6789", "+49-151-23456789",
    "tel:+49-151-23456789", "(0151) 23456789",
])
def test_every_notation_of_a_number_has_the_same_index(notation: str) -> None:
    assert BI.phone(notation) == BI.phone("+4915123456789")


def test_national_number_uses_the_default_region() -> None:
    assert normalise_phone("030 12345678", "DE") == "+493012345678"
    assert normalise_phone("(202) 555-0147", "US") == "+12025550147"


@given(st.integers(10_000_000, 99_999_999))
def test_different_numbers_have_different_indexes(n: int) -> None:
    a, b = f"+49151{n}", f"+49151{(n + 1) % 10**8:08d}"
    assert BI.phone(a) != BI.phone(b)


@pytest.mark.parametrize("bad", ["12", "+49 000", "anonymous", "", "+999 1234567"])
def test_invalid_number_is_rejected_without_echoing_it(bad: str) -> None:
    with pytest.raises(InvalidInput) as err:
        BI.phone(bad)
    digits = "".join(c for c in bad if c.isdigit())
    if digits:
        assert digits not in str(err.value) and digits not in repr(err.value.details)


def test_phone_and_customer_number_indexes_never_collide() -> None:
    assert BI.customer_number("4915123456789") != BI.phone("+4915123456789")


def test_index_depends_on_the_key() -> None:
    assert BlindIndex(b"x" * 32).phone("+4915123456789") != BI.phone("+4915123456789")


@given(st.text("0123456789", min_size=1, max_size=16))
def test_customer_number_ignores_spaces_and_dashes(digits: str) -> None:
    spaced = "-".join(digits)
    assert BI.customer_number(spaced) == BI.customer_number(digits)


def test_customer_number_rejects_letters() -> None:
    with pytest.raises(InvalidInput):
        BI.customer_number("12a4")
