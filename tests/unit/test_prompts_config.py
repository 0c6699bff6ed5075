"""Prompt replacements and languages (#18.6) and the capture keys of #18.2 in the config:
``[prompts] sounds_dir``, ``[prompts:<lang>] <prompt> = <sound>``, ``[capture]
postal_code_format`` / ``account_number_*_digits``; and how a ``Play`` is resolved."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from callsec_ari.config_check import load_settings
from callsec_ari.core import commands as c
from callsec_ari.core.errors import ConfigError
from callsec_ari.runtime.prompts import PromptBook, known_prompt_names, scan_sounds

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "callsec.conf"
    path.write_text(text, encoding="utf-8")
    return path


def play(*names: str, language: str = "de") -> c.Play:
    return c.Play(playback_id="p1", media=tuple(f"sound:callsec/{n}" for n in names),
                  language=language)


@pytest.mark.parametrize(("text", "section", "key"), [
    ("[capture]\npostal_code_format = nl\n", "capture", "postal_code_format"),
    ("[capture]\npostal_code_format = \n", "capture", "postal_code_format"),
    ("[capture]\naccount_number_min_digits = 0\n", "capture", "account_number_min_digits"),
    ("[capture]\naccount_number_max_digits = 31\n", "capture", "account_number_max_digits"),
    ("[capture]\naccount_number_min_digits = 12\naccount_number_max_digits = 10\n", "capture",
     "account_number_min_digits"),
    ("[prompts:de]\nenter-card-numbr = custom/karte\n", "prompts:de", "enter-card-numbr"),
    ("[prompts:de]\nenter-card-number = custom/karte.wav\n", "prompts:de", "enter-card-number"),
    ("[prompts:de]\nenter-card-number = ../../etc/karte\n", "prompts:de", "enter-card-number"),
    ("[prompts:de]\nenter-card-number = custom/kar te\n", "prompts:de", "enter-card-number"),
    ("[prompts:Deutsch]\nenter-card-number = custom/karte\n", "prompts:Deutsch", None),
    ("[prompts]\nsound_dir = /tmp\n", "prompts", "sound_dir"),
])
def test_bad_prompt_and_field_settings_name_section_and_key(
        tmp_path: Path, text: str, section: str, key: str | None) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), env={})
    assert info.value.section == section and info.value.key == key


def test_prompt_overrides_and_field_settings_load(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, (
        "[capture]\npostal_code_format = us\naccount_number_max_digits = 12\n"
        "[prompts]\nsounds_dir = /usr/share/asterisk/sounds\n"
        "[prompts:de]\nenter-card-number = custom/karte-bitte\n"
        "[prompts:pt_BR]\nenter-cvv = /var/lib/callsec/prompts/cvv\n")), env={})
    assert settings.capture.postal_code_format == "us"
    assert settings.capture.account_number_max_digits == 12
    assert settings.prompts.sounds_dir == Path("/usr/share/asterisk/sounds")
    assert settings.prompt_overrides["de"]["enter-card-number"] == "custom/karte-bitte"
    assert settings.prompt_overrides["pt_BR"]["enter-cvv"] == "/var/lib/callsec/prompts/cvv"


def test_known_prompt_names_come_from_the_english_texts() -> None:
    names = known_prompt_names()
    assert {"enter-card-number", "enter-routing-number", "entry-check-failed"} <= names


def test_an_override_replaces_the_prompt_in_its_language_only() -> None:
    book = PromptBook(overrides={"de": {"enter-card-number": "custom/karte-bitte"}})
    out, missing = book.resolve(play("invalid-entry", "enter-card-number"))
    assert out.media == ("sound:callsec/invalid-entry", "sound:custom/karte-bitte")
    assert missing == ()
    same, _ = book.resolve(play("enter-card-number", language="en"))
    assert same.media == ("sound:callsec/enter-card-number",)


def make_sounds(root: Path, lang: str, *names: str) -> None:
    (root / lang / "callsec").mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / lang / "callsec" / f"{name}.wav").write_bytes(b"RIFF")


def test_a_dropped_in_language_is_used_and_a_missing_prompt_plays_english(
        tmp_path: Path) -> None:
    make_sounds(tmp_path, "en", "enter-card-number", "enter-cvv")
    make_sounds(tmp_path, "xx", "enter-card-number")
    assert scan_sounds(tmp_path) == {"en": frozenset({"enter-card-number", "enter-cvv"}),
                                     "xx": frozenset({"enter-card-number"})}
    book = PromptBook.create({}, tmp_path)
    out, missing = book.resolve(play("enter-card-number", "enter-cvv", language="xx"))
    assert out.language == "xx"
    assert out.media == ("sound:callsec/enter-card-number", "sound:en/callsec/enter-cvv")
    assert missing == ("enter-cvv",)


def test_a_language_without_files_plays_english_and_names_every_prompt(tmp_path: Path) -> None:
    make_sounds(tmp_path, "en", "enter-cvv")
    out, missing = PromptBook.create({}, tmp_path).resolve(play("enter-cvv", language="fr"))
    assert out.media == ("sound:en/callsec/enter-cvv",) and missing == ("enter-cvv",)


def test_an_unusable_language_code_plays_english() -> None:
    out, _ = PromptBook().resolve(play("enter-cvv", language="../../x"))
    assert out.language == "en"


def test_without_a_sounds_dir_prompts_are_left_to_asterisk() -> None:
    out, missing = PromptBook().resolve(play("enter-cvv", language="xx"))
    assert out.media == ("sound:callsec/enter-cvv",) and missing == ()


def test_an_override_naming_a_missing_file_is_logged_at_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_sounds(tmp_path, "de", "enter-cvv")
    (tmp_path / "custom").mkdir()
    (tmp_path / "custom" / "da.wav").write_bytes(b"RIFF")
    with caplog.at_level(logging.WARNING):
        PromptBook.create({"de": {"enter-cvv": "custom/da", "enter-expiry": "custom/weg"}},
                          tmp_path)
    assert "enter-expiry" in caplog.text and "enter-cvv" not in caplog.text


def test_a_language_dropped_in_while_running_is_used_after_the_relisting(
        tmp_path: Path) -> None:
    now = [100.0]
    make_sounds(tmp_path, "en", "enter-cvv")
    book = PromptBook.create({}, tmp_path)
    book.clock = lambda: now[0]
    out, _ = book.resolve(play("enter-cvv", language="xx"))
    assert out.media == ("sound:en/callsec/enter-cvv",)
    make_sounds(tmp_path, "xx", "enter-cvv")
    now[0] += 31.0
    out, missing = book.resolve(play("enter-cvv", language="xx"))
    assert out.media == ("sound:callsec/enter-cvv",) and missing == ()
