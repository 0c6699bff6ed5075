"""Every prompt named in sounds/texts exists in both languages as an 8 kHz mono 16-bit WAV."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

SOUNDS = Path(__file__).resolve().parents[2] / "sounds"
LANGS = ("en", "de")

# The prompts the verification and capture flows play (the flows refer to these names).
REQUIRED = {
    "welcome", "enter-customer-number", "customer-not-found", "code-sent-sms", "code-sent-email",
    "enter-code", "enter-totp", "code-wrong", "code-expired", "code-resent", "verified",
    "verification-failed", "locked", "delivery-failed", "no-contact", "connecting-agent",
    "agent-unavailable", "goodbye", "please-hold",
    "enter-card-number", "enter-expiry", "enter-cvv", "enter-postal-code", "enter-iban",
    "enter-national-id", "invalid-entry", "entry-too-short", "capture-complete",
    "capture-cancelled", "capture-timeout", "agent-left", "customer-entering-details",
    "enter-again-to-confirm", "probe-enter-digits", "probe-thanks", "verification-restarted",
}


def read_texts(lang: str) -> dict[str, str]:
    texts: dict[str, str] = {}
    for line in (SOUNDS / "texts" / f"{lang}.txt").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, text = line.partition("|")
        assert sep and name and text.strip(), f"{lang}: malformed line {line!r}"
        assert name not in texts, f"{lang}: duplicate prompt {name}"
        texts[name] = text
    return texts


def assert_telephony_wav(path: Path) -> None:
    assert path.is_file(), f"missing {path.relative_to(SOUNDS)}"
    with wave.open(str(path), "rb") as wav:
        assert wav.getframerate() == 8000, path
        assert wav.getnchannels() == 1, path
        assert wav.getsampwidth() == 2, path
        assert wav.getcomptype() == "NONE", path
        seconds = wav.getnframes() / wav.getframerate()
    assert 0.2 < seconds < 15, f"{path.name}: {seconds:.2f} s"


@pytest.mark.parametrize("lang", LANGS)
def test_texts_name_every_prompt_the_flows_play(lang: str) -> None:
    assert REQUIRED <= set(read_texts(lang))


def test_both_languages_name_the_same_prompts() -> None:
    assert set(read_texts("en")) == set(read_texts("de"))


@pytest.mark.parametrize("lang", LANGS)
def test_every_prompt_in_the_texts_has_a_telephony_wav(lang: str) -> None:
    for name in read_texts(lang):
        assert_telephony_wav(SOUNDS / lang / "callsec" / f"{name}.wav")


@pytest.mark.parametrize("lang", LANGS)
def test_no_stray_wav_without_a_text(lang: str) -> None:
    names = set(read_texts(lang))
    stray = {p.stem for p in (SOUNDS / lang / "callsec").glob("*.wav")} - names
    assert not stray


def test_german_digits_exist_for_callers_who_hear_german() -> None:
    for digit in range(10):
        assert_telephony_wav(SOUNDS / "de" / "digits" / f"{digit}.wav")


@pytest.mark.parametrize("lang", LANGS)
def test_prompts_never_contain_numerals(lang: str) -> None:
    # Numbers are spoken with the digits/N sounds, never baked into a prompt.
    for name, text in read_texts(lang).items():
        assert not any(ch.isdigit() for ch in text), name


def test_agreed_wording_of_key_prompts() -> None:
    en = read_texts("en")
    assert en["code-sent-sms"].endswith("to your phone ending in")
    assert en["enter-code"] == (
        "Please enter the code, then press the hash key. To have it sent again, press star."
    )
    assert en["customer-entering-details"] == (
        "The customer is entering their details. Please wait."
    )
    assert read_texts("de")["code-sent-sms"].endswith("mit der Endung")
