"""Broken configuration files and environment overrides: ``callsec check-config`` exits 2 and
names what is wrong (the file, the section, the key), never a traceback, never a silent pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from callsec_ari.cli import main

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "callsec.conf"


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["-c", str(path), "check-config"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err


@pytest.mark.parametrize(("content", "named"), [
    (b"[web]\nport = 8080\n[web]\nport = 8081\n", "[web]: "),
    (b"[web]\nport = 8080\nport = 9090\n", "[web] port: "),
    (b"[web]\nport = eighty\n", "[web] port: "),
    (b"[web]\nport = 70000\n", "[web] port: "),
    (b"[web]\nenabled = maybe\n", "[web] enabled: "),
    (b"[web]\nprot = 8080\n", "[web] prot: unknown key"),
    (b"[nosuch]\nkey = 1\n", "[nosuch]: unknown section"),
    (b"[sms]\nbackend = carrierpigeon\n", "[sms] backend: "),
    (b"[sms]\ntimeout_seconds = soon\n", "[sms] timeout_seconds: "),
    (b"[ari]\nurls = ftp://x\n", "[ari] urls: "),
    (b"[ari]\npassword_file = /nonexistent/secret\n", "[ari] password_file: "),
    (b"[verification]\ncode_digits = 3\n", "[verification] code_digits: "),
    (b"[verification]\ndefault_policy = gold\n", "[verification] default_policy: "),
    (b"[policy:vip]\nrequire_code = sometimes\n", "[policy:vip] require_code: "),
    (b"port = 8080\n[web]\n", "no section headers"),
    (b"[web]\nport 8080\n", "parsing errors"),
    (b"\xff\xfe[web]\nport = 8080\n", "not UTF-8"),
    (b"[web]\nport = \xe9\n", "not UTF-8"),
])
def test_broken_file_exits_2_naming_the_place(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             content: bytes, named: str) -> None:
    path = tmp_path / "callsec.conf"
    path.write_bytes(content)
    code, err = check(path, capsys)
    assert code == 2 and named in err, err


def test_unreadable_or_missing_file_exits_2_naming_the_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for path in (tmp_path / "missing.conf", tmp_path):  # a directory cannot be read either
        code, err = check(path, capsys)
        assert code == 2 and f"cannot read {path}" in err


@pytest.mark.parametrize(("name", "value", "named"), [
    ("CALLSEC_WEB__PORT", "abc", "[web] port: "),
    ("CALLSEC_WEB__PORT", "", "[web] port: "),
    ("CALLSEC_WEB__NOSUCH", "1", "[web] nosuch: unknown environment override"),
    ("CALLSEC_NOSUCH__KEY", "1", "[nosuch] key: unknown environment override"),
    ("CALLSEC_WEB__PASSWORD_FILE", "/x", "[web] password_file: unknown environment override"),
    ("CALLSEC_POLICY_GOLD__REQUIRE_CODE", "never", "[policy:gold] require_code: unknown"),
    ("CALLSEC_POLICY_DEFAULT__REQUIRE_CODE", "sometimes", "[policy:default] require_code: "),
    ("CALLSEC_SMS__HMAC_KEY_FILE", "/nonexistent/key", "[sms] hmac_key_file: "),
    ("CALLSEC_CAPTURE__SINK", "paper", "[capture] sink: "),
])
def test_bad_environment_override_exits_2_naming_the_key(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str,
        value: str, named: str) -> None:
    monkeypatch.setenv(name, value)
    code, err = check(SHIPPED, capsys)
    assert code == 2 and named in err, err


def test_known_overrides_and_unrelated_variables_pass(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in (("CALLSEC_POLICY_DEFAULT__REQUIRE_CODE", "never"),
                        ("CALLSEC_ARI__PASSWORD", "x"), ("CALLSEC_TEST_PG_URL", "whatever"),
                        ("CALLSEC_BENCH_TRACE", "1")):
        monkeypatch.setenv(name, value)
    assert check(SHIPPED, capsys)[0] == 0
