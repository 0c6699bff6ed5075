"""The shipped samples: ``config/callsec.conf.sample`` documents every key with its default
and loads; the Asterisk samples under ``config/asterisk/`` pass ``callsec doctor``'s checks."""

from __future__ import annotations

import configparser
import dataclasses
import re
from pathlib import Path

import pytest

from callsec_ari.ami.manager import ConfigCategory
from callsec_ari.config import SECTIONS, PolicySettings, Settings
from callsec_ari.config.loader import resolve_paths
from callsec_ari.config_check import load_settings
from callsec_ari.doctor import run_checks
from callsec_ari.doctor.gather import apply_config_files
from callsec_ari.doctor.model import Facts, Severity

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "config" / "callsec.conf.sample"
ASTERISK = REPO / "config" / "asterisk"


def _sample_lines() -> list[str]:
    return SAMPLE.read_text(encoding="utf-8").splitlines()


def _sample_keys() -> dict[str, list[str]]:
    parser = configparser.ConfigParser(interpolation=None, comment_prefixes=(";",),
                                       inline_comment_prefixes=(";",), strict=True,
                                       default_section="__none__")
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(SAMPLE.read_text(encoding="utf-8"))
    return {section: list(parser[section]) for section in parser.sections()}


def _expected_keys() -> dict[str, list[str]]:
    expected = {name: [f.name for f in dataclasses.fields(cls)] for name, cls in SECTIONS.items()}
    expected["policy:default"] = [f.name for f in dataclasses.fields(PolicySettings)]
    return expected


@pytest.mark.parametrize("section", sorted(_expected_keys()))
def test_sample_lists_every_key_of_every_section(section: str) -> None:
    keys = _sample_keys()
    assert section in keys, f"[{section}] missing from {SAMPLE.name}"
    missing = set(_expected_keys()[section]) - set(keys[section])
    assert not missing, f"[{section}] keys not in {SAMPLE.name}: {sorted(missing)}"


def test_sample_loads_and_shows_the_built_in_defaults() -> None:
    settings = load_settings(SAMPLE, env={})
    defaults = resolve_paths(Settings(base_dir=SAMPLE.parent))  # relative to the file's dir
    for section in SECTIONS:
        assert getattr(settings, section) == getattr(defaults, section), section
    assert settings.policies["default"] == PolicySettings()


def test_every_key_in_the_sample_is_documented_by_a_comment_above_it() -> None:
    """Each key line follows a comment, directly or after at most three keys of its group."""
    since_comment = 99
    for number, line in enumerate(_sample_lines(), 1):
        stripped = line.strip()
        if stripped.startswith(";"):
            since_comment = 0
        elif stripped.startswith("[") or not stripped:
            since_comment = 99 if stripped.startswith("[") else since_comment
        elif "=" in stripped:
            since_comment += 1
            assert since_comment <= 4, f"{SAMPLE.name}:{number}: {stripped!r} has no comment"


# -- Asterisk samples -----------------------------------------------------------------------------
_HEADER = re.compile(r"^\[(?P<name>[^\]]+)\](?:\((?P<opts>[^)]*)\))?\s*$")


def parse_asterisk_conf(text: str) -> list[ConfigCategory]:
    """Asterisk's config syntax as GetConfig reports it: templates ``(!)`` hidden, inherited
    lines first, ``key => value`` as ``key = value``."""
    templates: dict[str, list[tuple[str, str]]] = {}
    categories: list[tuple[str, list[tuple[str, str]], bool]] = []
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        header = _HEADER.match(line)
        if header:
            opts = [o.strip() for o in (header.group("opts") or "").split(",") if o.strip()]
            items = [kv for o in opts if o not in ("!", "+") for kv in templates[o]]
            categories.append((header.group("name"), items, "!" in opts))
            continue
        key, _, value = line.replace("=>", "=").partition("=")
        name, items, is_template = categories[-1]
        items.append((key.strip(), value.strip()))
        if is_template:
            templates[name] = items
    return [ConfigCategory(name, tuple(items)) for name, items, tpl in categories if not tpl]


def test_the_asterisk_samples_pass_doctor() -> None:
    configs = {path.name: parse_asterisk_conf(path.read_text(encoding="utf-8"))
               for path in sorted(ASTERISK.glob("*.conf"))}
    assert {"ari.conf", "http.conf", "manager.conf", "pjsip.conf"} <= set(configs)
    facts = Facts(settings=Settings(), ari_url="http://127.0.0.1:8088", configs=configs,
                  modules={"app_mixmonitor"}, can_mute=True, log_channels=[])
    apply_config_files(facts)
    assert facts.trunks == {"carrier1"}
    assert facts.endpoints is not None and {"agent100", "agent101", "carrier1"} <= set(
        facts.endpoints)
    findings = [f for f in run_checks(facts) if f.id != "sms-outbox"]  # callsec.conf, not these
    assert findings == [], [(f.id, f.where) for f in findings]


def test_the_manager_sample_user_reads_no_events_and_may_mute() -> None:
    manager = parse_asterisk_conf((ASTERISK / "manager.conf").read_text(encoding="utf-8"))
    user = next(c for c in manager if c.name == "callsec")
    assert user.get("read") == ""
    assert set((user.get("write") or "").split(",")) == {"system", "call"}


def test_the_doctor_parser_catches_a_leaky_sample() -> None:
    """The sample test is not vacuous: direct media and an rfc4733 trunk are found."""
    text = (ASTERISK / "pjsip.conf").read_text(encoding="utf-8").replace(
        "dtmf_mode = auto", "dtmf_mode = rfc4733").replace("direct_media = no", "")
    facts = Facts(settings=Settings(), ari_url="http://127.0.0.1:8088",
                  configs={"pjsip.conf": parse_asterisk_conf(text)}, log_channels=[])
    apply_config_files(facts)
    found = {f.id: f.severity for f in run_checks(facts)}
    assert found["pjsip-direct-media"] is Severity.WARNING
    assert found["pjsip-trunk-dtmf-mode"] is Severity.WARNING


@pytest.mark.parametrize("name", ["logger.conf.notes", "cel.conf.notes"])
def test_notes_name_the_doctor_finding_they_explain(name: str) -> None:
    text = (ASTERISK / name).read_text(encoding="utf-8")
    assert ("logger-dtmf" if name.startswith("logger") else "cel-dtmf") in text
