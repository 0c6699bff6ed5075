import logging

from hypothesis import given
from hypothesis import strategies as st

from callsec_ari.core.masking import mask_digits, mask_phone
from callsec_ari.logs import Figure, RedactingFilter, redact_text


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


IBANS = ["DE89370400440532013000", "GB29NWBK60161331926819", "FR1420041010050500013M02606",
         "NL91ABNA0417164300", "AT611904300234573201"]


def test_compact_ibans_are_blanked() -> None:
    for iban in IBANS:
        assert iban not in redact_text(f"caller read {iban} out")
        assert iban[4:] not in redact_text(f"iban={iban}")


@given(st.sampled_from(["PAN", "pan", "card", "code", "CODE", "otp", "pin", "cvv", "tan",
                        "reason_code"]),
       st.sampled_from([":", "=", ": ", " = ", ":'"]),
       st.text(alphabet="0123456789", min_size=4, max_size=19))
def test_digits_after_a_secret_label_are_blanked(label: str, sep: str, digits: str) -> None:
    shown = redact_text(f"got {label}{sep}{digits} from the caller")
    assert digits not in shown and "<redacted>" in shown


@given(st.lists(st.text(alphabet="0123456789", min_size=4, max_size=4), min_size=3,
                max_size=5))
def test_dotted_card_numbers_are_blanked(groups: list[str]) -> None:
    dotted = ".".join(groups)
    assert dotted not in redact_text(f"card {dotted} declined")
    assert "".join(groups) not in redact_text(f"card {dotted} declined").replace(".", "")


def test_named_examples_of_issue_14_are_blanked() -> None:
    for secret in ("DE89370400440532013000", "PAN:4111111111111111", "4111.1111.1111.1111",
                   "code:123456", "code=123456"):
        shown = redact_text(f"x {secret} y")
        assert not any(run in shown for run in ("4111", "123456", "370400")), shown


def test_ids_addresses_refs_and_times_are_kept() -> None:
    for text in ("call 1733567890.42 answered", "listening on 127.0.0.1:8080",
                 "peer 192.168.100.200 refused", "customer C-DE23ABCDEFGHIJKL found",
                 "capture CP-1a2b3c4d5e6f7a8b", "at 2026-12-07T13:00:00+00:00",
                 "audit head 12345:" + "ab12" * 16, "kek-0001 retired"):
        assert redact_text(text) == text


@given(st.sampled_from(["code", "pin", "pan", "frames", "count"]),
       st.integers(min_value=0, max_value=10**12))
def test_a_figure_survives_even_after_a_label(label: str, count: int) -> None:
    shown = redact_text(f"{label}={Figure(count)} ms={Figure(count / 7)}")
    assert "<redacted>" not in shown
