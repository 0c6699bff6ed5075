import logging

from hypothesis import given
from hypothesis import strategies as st

from callsec_ari.logs import Figure, RedactingFilter, mask_digits, mask_phone, redact_text


@given(st.text(alphabet="0123456789", min_size=1, max_size=25))
def test_mask_digits_never_shows_a_digit_of_the_value(value: str) -> None:
    assert mask_digits(value) == f"<{len(value)} digits>"


def test_mask_phone_keeps_country_and_last_two() -> None:
    assert mask_phone("+4915112345678") == "+49…78"


@given(st.text(alphabet="0123456789", min_size=4, max_size=19))
def test_redact_text_removes_free_standing_digit_runs(number: str) -> None:
    assert number not in redact_text(f"caller typed {number} then hung up")


def test_redacting_filter_rewrites_record_and_sets_call_id() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "code %s sent", ("482913",), None)
    RedactingFilter().filter(record)
    assert "482913" not in record.getMessage()
    assert record.call_id == "-"  # type: ignore[attr-defined]


@given(st.integers(min_value=0, max_value=10**12))
def test_a_figure_survives_the_redactor_and_reads_as_its_value(count: int) -> None:
    shown = redact_text(f"media closed: {Figure(count)} frames relayed")
    assert "<redacted>" not in shown
    assert int(shown.split()[2].replace(",", "")) == count
