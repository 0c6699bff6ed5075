"""Confirm without typing, the pure parts: Twilio's request signature (Twilio's documented
example), SMS replies, link tokens and the ``[web] public_url`` check."""

import dataclasses
from pathlib import Path

import pytest

from callsec_ari.config import PolicySettings, Settings, WebSettings
from callsec_ari.config_check import load_settings
from callsec_ari.core.errors import ConfigError
from callsec_ari.verification import confirm_links as links

# Twilio's documented example (security guide / request validator docs)
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+14158675310"),
                 ("Digits", "1234"), ("From", "+14158675310"), ("To", "+18005551212")]
TWILIO_SIGNATURE = "GvWf1cFY/Q7PnoempGyD5oXAezc="


def test_twilio_signature_matches_twilios_documented_example() -> None:
    assert links.twilio_signature("12345", TWILIO_URL, TWILIO_PARAMS) == TWILIO_SIGNATURE
    assert links.twilio_signature_ok("12345", TWILIO_URL, reversed(TWILIO_PARAMS),
                                     TWILIO_SIGNATURE)


@pytest.mark.parametrize("token, url, params, signature", [
    ("12346", TWILIO_URL, TWILIO_PARAMS, TWILIO_SIGNATURE),            # another auth token
    ("12345", TWILIO_URL.replace("foo=1", "foo=2"), TWILIO_PARAMS, TWILIO_SIGNATURE),
    ("12345", TWILIO_URL, [*TWILIO_PARAMS[:4], ("To", "+18005551213")], TWILIO_SIGNATURE),
    ("12345", TWILIO_URL, TWILIO_PARAMS, ""),                           # unsigned
    ("", TWILIO_URL, TWILIO_PARAMS, TWILIO_SIGNATURE),                  # no auth token set
])
def test_twilio_signature_refuses_any_change(token: str, url: str,
                                             params: list[tuple[str, str]],
                                             signature: str) -> None:
    assert not links.twilio_signature_ok(token, url, params, signature)


@pytest.mark.parametrize("body, answer", [
    ("YES", True), (" yes. ", True), ("Ja", True), ("JA!", True), ("no", False),
    ("NEIN", False), ("N", False), ("maybe", None), ("", None), ("yes please", None),
    ("482913", None),
])
def test_replies_yes_ja_confirm_and_no_nein_deny(body: str, answer: bool | None) -> None:
    assert links.parse_reply(body) is answer


def test_link_tokens_are_256_bit_random_and_checked_for_shape() -> None:
    first, second = links.new_token(), links.new_token()
    assert first != second and len(first) >= 43 and links.well_formed_token(first)
    assert not links.well_formed_token("short")
    assert not links.well_formed_token(first[:-1] + "/")
    assert links.link_for("https://pay.example.com/", first) == \
        f"https://pay.example.com/confirm/{first}"


def test_message_lines_in_the_customers_language() -> None:
    en = links.message_lines("en", link="https://x.example/confirm/t", reply=True)
    assert "https://x.example/confirm/t" in en and "Reply YES" in en
    assert "Antworten Sie JA" in links.message_lines("de-DE", reply=True)
    assert links.message_lines("en") == ""


def settings(url: str, methods: tuple[str, ...] = ("sms", "link")) -> Settings:
    base = Settings()
    return dataclasses.replace(base, web=WebSettings(public_url=url),
                               policies={"default": PolicySettings(methods=methods)})


@pytest.mark.parametrize("url", ["https://pay.example.com", "https://pay.example.com/cs/",
                                 "http://127.0.0.1:8080", "http://localhost:8080"])
def test_public_url_accepts_https_and_loopback_http(url: str) -> None:
    links.check_public_url(settings(url))


@pytest.mark.parametrize("url", ["http://pay.example.com", "ftp://x.example", "pay.example.com",
                                 "https://pay.example.com/?a=1", "https://u:p@pay.example.com",
                                 ""])
def test_public_url_refuses_what_a_customer_must_not_be_sent_to(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        links.check_public_url(settings(url))
    assert caught.value.details.get("key") == "public_url" or "public_url" in str(caught.value)


def test_public_url_may_stay_empty_without_the_link_method() -> None:
    links.check_public_url(settings("", ("sms", "sms_reply")))


CONF = Path(__file__).resolve().parents[2] / "config" / "callsec.conf"


@pytest.mark.parametrize("env, key", [
    ({"CALLSEC_POLICY_DEFAULT__METHODS": "sms,link"}, "public_url"),
    ({"CALLSEC_POLICY_DEFAULT__METHODS": "totp,link",
      "CALLSEC_WEB__PUBLIC_URL": "https://pay.example.com"}, "methods"),
    ({"CALLSEC_POLICY_DEFAULT__METHODS": "sms,fax"}, "methods"),
    ({"CALLSEC_WEB__PUBLIC_URL": "http://pay.example.com"}, "public_url"),
])
def test_the_config_refuses_link_methods_it_cannot_serve(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(CONF, env=env)
    assert key in str(caught.value) or caught.value.details.get("key") == key


def test_the_config_takes_link_and_sms_reply_with_a_public_url() -> None:
    settings = load_settings(CONF, env={
        "CALLSEC_POLICY_DEFAULT__METHODS": "sms,email,link,sms_reply",
        "CALLSEC_WEB__PUBLIC_URL": "https://pay.example.com"})
    assert settings.policy(None).methods == ("sms", "email", "link", "sms_reply")
