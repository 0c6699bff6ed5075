"""The code message bound to the call: pure rendering, both languages, both channels."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callsec_ari.config import VerificationSettings
from callsec_ari.core.errors import ConfigError, InvalidInput
from callsec_ari.verification.messages import (
    WARNINGS,
    call_reference,
    check_message_settings,
    render_code_message,
)

SETTINGS = VerificationSettings()
WHEN = datetime(2025, 1, 15, 13, 7, tzinfo=UTC)  # 14:07 in Berlin (CET)
SUMMER = datetime(2025, 7, 15, 13, 7, tzinfo=UTC)  # 15:07 in Berlin (CEST)
REF = call_reference("1736946420.42")
CALLER = "+4915112345678"
SMS_SEGMENT = 160
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


def gsm7_length(text: str) -> int | None:
    """Septets ``text`` takes in the GSM 03.38 alphabet, or ``None`` if it needs UCS-2."""
    length = 0
    for char in text:
        if char in _GSM7_BASIC:
            length += 1
        elif char in _GSM7_EXTENDED:
            length += 2
        else:
            return None
    return length

codes = st.text(alphabet="0123456789", min_size=4, max_size=10)
langs = st.sampled_from(["en", "de"])
channels = st.sampled_from(["sms", "email"])


def test_english_warning_is_the_agreed_sentence() -> None:
    assert WARNINGS["en"] == "We will never ask you to read this code to us."
    assert WARNINGS["de"] == "Wir werden Sie niemals bitten, uns diesen Code vorzulesen."


@given(code=codes, lang=langs, channel=channels)
def test_every_message_carries_code_warning_company_time_and_ref(
    code: str, lang: str, channel: str
) -> None:
    subject, body = render_code_message(lang, channel, code, REF, WHEN, SETTINGS)  # type: ignore[arg-type]
    assert code in body
    assert WARNINGS[lang] in body
    assert SETTINGS.company_name in body
    assert "14:07" in body
    assert REF in body
    if channel == "sms":
        assert subject is None
    else:
        assert subject is not None and SETTINGS.company_name in subject


@given(code=codes, lang=langs, channel=channels)
def test_subject_never_contains_the_code(code: str, lang: str, channel: str) -> None:
    subject, _ = render_code_message(lang, channel, code, REF, WHEN, SETTINGS)  # type: ignore[arg-type]
    assert subject is None or not re.search(r"\d{4,}", subject)


# A code may by chance hold the caller's digits; the check is about what else the text holds.
@given(code=codes.filter(lambda c: CALLER[-8:] not in c), lang=langs)
def test_message_holds_no_phone_number(code: str, lang: str) -> None:
    for channel in ("sms", "email"):
        subject, body = render_code_message(lang, channel, code, REF, WHEN, SETTINGS)
        text = f"{subject} {body}"
        assert CALLER not in text and CALLER[-8:] not in text
        # The only run of digits is the code itself (times are split by a colon).
        assert re.findall(r"\d{3,}", text) == [code]


@given(code=codes)
def test_english_sms_fits_one_gsm7_segment(code: str) -> None:
    _, body = render_code_message("en", "sms", code, REF, WHEN, SETTINGS)
    length = gsm7_length(body)
    assert length is not None and length <= SMS_SEGMENT


def test_english_sms_fits_with_a_thirty_character_company_name() -> None:
    settings = dataclasses.replace(SETTINGS, company_name="Musterstadt Savings Bank Ltd.")
    _, body = render_code_message("en", "sms", "1234567890", REF, WHEN, settings)
    length = gsm7_length(body)
    assert length is not None and length <= SMS_SEGMENT


def test_german_sms_uses_umlauts_and_stays_gsm7() -> None:
    _, body = render_code_message("de", "sms", "123456", REF, WHEN, SETTINGS)
    assert "für" in body
    assert gsm7_length(body) is not None


def test_gsm7_length_counts_extension_characters_twice_and_rejects_ucs2() -> None:
    assert gsm7_length("abc") == 3
    assert gsm7_length("€[") == 4
    assert gsm7_length("Привет") is None


def test_time_is_local_to_the_configured_zone_in_summer_and_winter() -> None:
    _, winter = render_code_message("en", "sms", "123456", REF, WHEN, SETTINGS)
    _, summer = render_code_message("en", "sms", "123456", REF, SUMMER, SETTINGS)
    assert "14:07" in winter and "15:07" in summer
    tokyo = dataclasses.replace(SETTINGS, timezone="Asia/Tokyo")
    _, body = render_code_message("en", "sms", "123456", REF, WHEN, tokyo)
    assert "22:07" in body


def test_time_of_an_aware_non_utc_datetime_is_converted() -> None:
    when = datetime(2025, 1, 15, 8, 7, tzinfo=timezone(timedelta(hours=-5)))
    _, body = render_code_message("en", "sms", "123456", REF, when, SETTINGS)
    assert "14:07" in body


def test_email_names_the_time_zone() -> None:
    _, body = render_code_message("de", "email", "123456", REF, SUMMER, SETTINGS)
    assert "15:07 Uhr (CEST)" in body


def test_unknown_language_falls_back_to_english_and_regional_tags_work() -> None:
    assert render_code_message("fr", "sms", "1234", REF, WHEN, SETTINGS) == render_code_message(
        "en", "sms", "1234", REF, WHEN, SETTINGS
    )
    _, body = render_code_message("de-DE", "sms", "1234", REF, WHEN, SETTINGS)
    assert WARNINGS["de"] in body


def test_template_override_is_used_and_warning_appended_when_missing() -> None:
    settings = dataclasses.replace(SETTINGS, sms_template_en="{company} code {code} ({ref})")
    _, body = render_code_message("en", "sms", "123456", REF, WHEN, settings)
    assert body == f"CallSec Demo code 123456 ({REF}) {WARNINGS['en']}"


def test_subject_override_is_used() -> None:
    settings = dataclasses.replace(SETTINGS, email_subject_de="Ihr Anruf bei {company}")
    subject, _ = render_code_message("de", "email", "123456", REF, WHEN, settings)
    assert subject == "Ihr Anruf bei CallSec Demo"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("sms_template_en", "{company} {cod}"),
        ("sms_template_de", "{company} {code.__class__}"),
        ("sms_template_en", "no code here {ref}"),
        ("email_subject_en", "your code {code}"),
        ("sms_template_de", "{code"),
        ("timezone", "Mars/Olympus_Mons"),
    ],
)
def test_bad_template_or_zone_is_a_config_error_naming_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        changes: dict[str, Any] = {key: value}
        check_message_settings(dataclasses.replace(SETTINGS, **changes))
    assert info.value.key == key and info.value.section == "verification"


def test_default_settings_pass_the_check() -> None:
    check_message_settings(SETTINGS)


def test_code_must_be_digits() -> None:
    with pytest.raises(InvalidInput):
        render_code_message("en", "sms", "12a4", REF, WHEN, SETTINGS)


@given(call_id=st.text(min_size=1, max_size=40))
def test_call_reference_is_short_opaque_and_digit_free(call_id: str) -> None:
    ref = call_reference(call_id)
    assert re.fullmatch(r"[A-HJ-NP-Z]{8}", ref)
    assert ref == call_reference(call_id)


def test_call_references_differ_between_calls() -> None:
    refs = {call_reference(f"1736946420.{n}") for n in range(1000)}
    assert len(refs) == 1000
