"""``callsec doctor``'s pure checks: each leak yields its finding id, with the severity rules
(loopback-only set-ups get ``info`` where the same thing on the network is a ``warning``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from callsec_ari.ami.manager import ConfigCategory, parse_config
from callsec_ari.config import AmiSettings, AriSettings, EmailSettings, Settings, SmsSettings
from callsec_ari.doctor import exit_code, run_checks
from callsec_ari.doctor.model import Facts, LogChannel, Severity, is_loopback, parse_levels


def cat(name: str, **items: str) -> ConfigCategory:
    return ConfigCategory(name=name, items=tuple(items.items()))


def production_settings(**sections: Any) -> Settings:
    """Loopback Asterisk, real SMS/e-mail backends: nothing to report by default."""
    base = Settings(sms=SmsSettings(backend="http", url="https://sms.invalid/", hmac_key="k"),
                    email=EmailSettings(backend="smtp"))
    return dataclasses.replace(base, **sections)


def clean_facts(**changes: Any) -> Facts:
    facts = Facts(
        settings=production_settings(), ari_url="http://127.0.0.1:8088",
        endpoints={"agent100": {"direct_media": "false", "dtmf_mode": "rfc4733"},
                   "pstn": {"direct_media": "false", "dtmf_mode": "auto"}},
        trunks={"pstn"},
        log_channels=[LogChannel("/var/log/asterisk/messages", "file",
                                 frozenset({"notice", "warning", "error"})),
                      LogChannel("console", "console", frozenset({"notice", "verbose"}))],
        modules={"app_mixmonitor", "res_agi"},
        configs={
            "manager.conf": [cat("general", enabled="yes", bindaddr="127.0.0.1"),
                             cat("callsec", secret="a-long-random-secret", read="call",
                                 write="system,call")],
            "http.conf": [cat("general", enabled="yes", bindaddr="127.0.0.1")],
            "ari.conf": [cat("general", enabled="yes"),
                         cat("callsec", type="user", password="another-long-secret")],
            "cel.conf": [cat("general", enable="yes", events="CHAN_START,CHAN_END")],
            "asterisk.conf": [cat("options", debug="0")],
        },
        can_mute=True,
    )
    return dataclasses.replace(facts, **changes)


def ids(facts: Facts) -> dict[str, Severity]:
    return {f.id: f.severity for f in run_checks(facts)}


def test_a_clean_production_like_asterisk_has_no_findings() -> None:
    assert run_checks(clean_facts()) == []
    assert exit_code([]) == 0


def test_endpoint_with_direct_media_is_a_warning_naming_it() -> None:
    facts = clean_facts()
    assert facts.endpoints is not None
    facts.endpoints["agent190"] = {"direct_media": "true", "dtmf_mode": "rfc4733"}
    [finding] = run_checks(facts)
    assert (finding.id, finding.severity) == ("pjsip-direct-media", Severity.WARNING)
    assert "agent190" in finding.where and "agent100" not in finding.where
    assert "direct_media = no" in finding.fix


@pytest.mark.parametrize(("mode", "expected"), [
    ("rfc4733", {"pjsip-trunk-dtmf-mode": Severity.WARNING}),
    ("info", {"pjsip-trunk-dtmf-mode": Severity.WARNING}),
    ("auto", {}),
    ("auto_info", {}),
    ("inband", {"pjsip-dtmf-inband": Severity.INFO}),
])
def test_trunk_dtmf_mode_other_than_auto_is_reported(mode: str, expected: dict[str, Severity],
                                                      ) -> None:
    facts = clean_facts()
    assert facts.endpoints is not None
    facts.endpoints["pstn"]["dtmf_mode"] = mode
    assert ids(facts) == expected


def test_phones_may_use_rfc4733_and_unknown_trunks_are_said_so() -> None:
    assert ids(clean_facts(trunks=None)) == {"pjsip-trunks-unknown": Severity.INFO}


@pytest.mark.parametrize("levels", ["notice,dtmf", "*", "[json]notice,dtmf"])
def test_logger_channel_with_dtmf_level_is_a_warning(levels: str) -> None:
    channel = LogChannel("/var/log/asterisk/full", "file", parse_levels(levels))
    assert ids(clean_facts(log_channels=[channel]))["logger-dtmf"] is Severity.WARNING


def test_debug_level_is_info_at_debug_0_and_a_warning_above() -> None:
    channel = LogChannel("/var/log/asterisk/debug", "file", frozenset({"debug"}))
    assert ids(clean_facts(log_channels=[channel]))["logger-debug"] is Severity.INFO
    facts = clean_facts(log_channels=[channel])
    facts.configs["asterisk.conf"] = [cat("options", debug="3")]
    assert ids(facts)["logger-debug"] is Severity.WARNING


def test_verbose_in_a_file_is_the_debug_switch_risk_but_console_is_not() -> None:
    file_channel = LogChannel("/var/log/asterisk/full", "file", frozenset({"verbose"}))
    console = LogChannel("console", "console", frozenset({"verbose"}))
    assert ids(clean_facts(log_channels=[file_channel])) == {
        "debug-commands-log-digits": Severity.INFO}
    assert ids(clean_facts(log_channels=[console])) == {}


@pytest.mark.parametrize(("general", "reported"), [
    (cat("general", enable="yes", events="APP_START,DTMF"), True),
    (cat("general", enable="yes", events="ALL"), True),
    (ConfigCategory("general", (("enable", "yes"), ("events", "CHAN_START"),
                                ("events", "dtmf"))), True),  # several lines accumulate
    (cat("general", enable="no", events="ALL"), False),
    (cat("general", events="ALL"), False),  # CEL is off unless enabled
])
def test_cel_dtmf_events_are_a_warning_when_cel_is_enabled(general: ConfigCategory,
                                                           reported: bool) -> None:
    facts = clean_facts()
    facts.configs["cel.conf"] = [general]
    assert ("cel-dtmf" in ids(facts)) is reported


@pytest.mark.parametrize("read", ["all", "system,dtmf", "call, DTMF"])
def test_ami_users_reading_dtmf_are_a_warning(read: str) -> None:
    facts = clean_facts()
    facts.configs["manager.conf"].append(cat("crm", secret="x" * 20, read=read))
    [finding] = run_checks(facts)
    assert finding.id == "ami-user-reads-dtmf" and "crm" in finding.where


def test_callsecs_own_user_reading_dtmf_is_named_as_such() -> None:
    facts = clean_facts()
    facts.configs["manager.conf"][1] = cat("callsec", secret="x" * 20, read="all")
    [finding] = run_checks(facts)
    assert "callsec's own user" in finding.where


def test_dtmf_events_seen_on_callsecs_connection_are_critical() -> None:
    findings = run_checks(clean_facts(observed_events=["DTMFBegin", "DTMFEnd", "DTMFEnd"]))
    assert findings[0].id == "ami-dtmf-events-observed"
    assert findings[0].severity is Severity.CRITICAL
    assert exit_code(findings) == 1


@pytest.mark.parametrize("general", [cat("general", enabled="yes", bindaddr="0.0.0.0"),
                                     cat("general", enabled="yes")])
def test_ami_listening_beyond_loopback_is_a_warning(general: ConfigCategory) -> None:
    facts = clean_facts()
    facts.configs["manager.conf"][0] = general
    assert ids(facts)["ami-plain-non-loopback"] is Severity.WARNING


def test_plain_http_beyond_loopback_is_a_warning_on_both_sides() -> None:
    facts = clean_facts()
    facts.configs["http.conf"] = [cat("general", enabled="yes", bindaddr="::")]
    facts.settings = production_settings(ari=AriSettings(urls=("http://10.1.2.3:8088",),
                                                         password="a-long-random-secret"))
    found = ids(facts)
    assert found["http-plain-non-loopback"] is Severity.WARNING
    assert found["ari-url-plain-http"] is Severity.WARNING


def test_https_ari_url_on_the_network_is_fine() -> None:
    facts = clean_facts()
    facts.settings = production_settings(ari=AriSettings(urls=("https://pbx.example:8089",),
                                                         password="a-long-random-secret"))
    assert "ari-url-plain-http" not in ids(facts)


def test_default_password_on_a_non_loopback_server_is_critical() -> None:
    facts = clean_facts()
    facts.settings = production_settings(
        ari=AriSettings(urls=("https://pbx.example:8089",)),
        ami=AmiSettings(host="10.1.2.3", password="callsec"))
    findings = [f for f in run_checks(facts) if f.id == "config-default-password"]
    assert [f.where for f in findings] == ["[ari] password", "[ami] password"]
    assert {f.severity for f in findings} == {Severity.CRITICAL}


def test_default_password_on_loopback_is_not_reported() -> None:
    facts = clean_facts()
    facts.settings = production_settings(ari=AriSettings(password="callsec"))
    assert "config-default-password" not in ids(facts)


def test_weak_asterisk_secrets_are_info_on_loopback_and_a_warning_when_exposed() -> None:
    facts = clean_facts()
    facts.configs["manager.conf"][1] = cat("callsec", secret="callsec", read="call")
    facts.configs["ari.conf"][1] = cat("callsec", type="user", password="callsec")
    weak = [f for f in run_checks(facts) if f.id == "asterisk-weak-secret"]
    assert [(f.where, f.severity) for f in weak] == [
        ("manager.conf users callsec", Severity.INFO), ("ari.conf users callsec", Severity.INFO)]
    facts.configs["manager.conf"][0] = cat("general", enabled="yes", bindaddr="10.1.2.3")
    assert Severity.WARNING in {f.severity for f in run_checks(facts)
                                if f.id == "asterisk-weak-secret"}


def test_crypt_ari_passwords_are_not_judged() -> None:
    facts = clean_facts()
    facts.configs["ari.conf"][1] = cat("callsec", type="user", password="$6$x",
                                       password_format="crypt")
    assert run_checks(facts) == []


def test_outbox_is_info_on_loopback_and_a_warning_on_a_real_deployment() -> None:
    facts = clean_facts()
    facts.settings = Settings()  # the shipped defaults: outbox, loopback
    assert ids(facts)["sms-outbox"] is Severity.INFO
    facts.settings = dataclasses.replace(
        Settings(), ari=AriSettings(urls=("https://pbx.example:8089",),
                                    password="a-long-random-secret"))
    assert ids(facts)["sms-outbox"] is Severity.WARNING


def test_recordings_callsec_cannot_mute_are_reported() -> None:
    assert ids(clean_facts(modules={"res_agi"})) == {"mixmonitor-not-loaded": Severity.INFO}
    assert ids(clean_facts(can_mute=False)) == {"recording-mute-unavailable": Severity.WARNING}
    facts = clean_facts()
    facts.settings = production_settings(ami=AmiSettings(enabled=False))
    found = ids(facts)
    assert found["recording-mute-unavailable"] is Severity.WARNING
    assert found["ami-disabled"] is Severity.INFO


def test_loaded_cdr_backends_are_informational() -> None:
    findings = run_checks(clean_facts(modules={"app_mixmonitor", "cdr_csv"}))
    assert [(f.id, f.severity) for f in findings] == [("cdr-caller-numbers", Severity.INFO)]
    assert exit_code(findings) == 0


def test_unreachable_interfaces_are_warnings() -> None:
    found = ids(clean_facts(ari_error="cannot connect", ami_error="refused"))
    assert found["ari-unreachable"] is Severity.WARNING
    assert found["ami-unreachable"] is Severity.WARNING
    assert ids(clean_facts(config_error="Permission denied")) == {
        "ami-config-denied": Severity.WARNING}


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.53", True), ("::1", True), ("[::1]:8088", True),
    ("localhost", True), ("127.0.0.1:5038", True), ("0.0.0.0", False), ("::", False),
    ("10.0.0.1", False), ("pbx.example", False), ("", False), (None, False),
])
def test_is_loopback(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_getconfig_headers_parse_into_ordered_categories_with_last_value_winning() -> None:
    headers = {
        "Response": "Success",
        "Category-000000": "general", "Line-000000-000000": "enabled=yes",
        "Line-000000-000001": "enabled=no",
        "Category-000001": "pstn", "Templates-000001": "endpoint-common",
        "Line-000001-000001": "dtmf_mode=auto", "Line-000001-000000": "type=endpoint",
        "Category-000002": "pstn", "Line-000002-000000": "type=aor",
        "Category-000003": "empty",
    }
    general, endpoint, aor, empty = parse_config(headers)
    assert general.get("enabled") == "no" and general.values("enabled") == ["yes", "no"]
    assert endpoint.items == (("type", "endpoint"), ("dtmf_mode", "auto"))
    assert endpoint.templates == ("endpoint-common",)
    assert (aor.name, aor.get("type")) == ("pstn", "aor")
    assert empty.items == () and empty.get("x", "default") == "default"
