from pathlib import Path

import pytest

from callsec_ari.cli import main
from callsec_ari.config import Secret
from callsec_ari.config_check import load_settings
from callsec_ari.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "callsec.conf"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_loads() -> None:
    settings = load_settings(REPO / "config" / "callsec.conf", env={})
    assert settings.ari.urls == ("http://127.0.0.1:18088",)
    assert settings.web.port == 8080 and settings.agi.port == 4573
    assert "default" in settings.policies


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[web]\nport = 8080\n")
    settings = load_settings(path, env={"CALLSEC_WEB__PORT": "9090"})
    assert settings.web.port == 9090


def test_env_override_for_section_absent_from_file(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    settings = load_settings(path, env={"CALLSEC_AGI__PORT": "4999"})
    assert settings.agi.port == 4999


def test_secret_read_from_file_and_masked_in_repr(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cr3t-value\n")
    path = write(tmp_path, f"[ari]\npassword_file = {secret}\n")
    settings = load_settings(path, env={})
    assert settings.ari.password == "s3cr3t-value"
    assert isinstance(settings.ari.password, Secret)
    assert "s3cr3t" not in repr(settings)


@pytest.mark.parametrize(("text", "section", "key"), [
    ("[web]\nport = eighty\n", "web", "port"),
    ("[web]\nprot = 80\n", "web", "prot"),
    ("[sms]\nbackend = pigeon\n", "sms", "backend"),
    ("[verification]\ncode_digits = 12\n", "verification", "code_digits"),
    ("[ami]\nenabled = maybe\n", "ami", "enabled"),
    ("[policy:vip]\nrequire_code = sometimes\n", "policy:vip", "require_code"),
    ("[ari]\nurls = ftp://x\n", "ari", "urls"),
    ("[ari]\napp_check_seconds = 0\n", "ari", "app_check_seconds"),
    ("[ari]\nrequest_timeout_seconds = -1\n", "ari", "request_timeout_seconds"),
    ("[ari]\nreconnect_min_seconds = 9\nreconnect_max_seconds = 2\n", "ari",
     "reconnect_min_seconds"),
    ("[capture]\nmedia_worker = inline\nmedia_realtime_priority = 10\n", "capture",
     "media_realtime_priority"),
    ("[capture]\ntalk_through_lookahead_ms = 2\n", "capture", "talk_through_lookahead_ms"),
    ("[capture]\nmedia_worker = process\nmedia_realtime_priority = 100\n", "capture",
     "media_realtime_priority"),
])
def test_bad_value_names_section_and_key(tmp_path: Path, text: str, section: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), env={})
    assert info.value.section == section and info.value.key == key
    assert f"[{section}] {key}" in info.value.message


def test_unknown_section_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, "[bogus]\nx = 1\n"), env={})
    assert info.value.section == "bogus"


def test_missing_secret_file_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[ari]\npassword_file = /nonexistent/pw\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert info.value.key == "password_file"


def test_check_config_exits_2_and_names_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[web]\nport = x\n")
    assert main(["-c", str(path), "check-config"]) == 2
    assert "[web] port" in capsys.readouterr().err


def test_check_config_ok_exits_0() -> None:
    assert main(["-c", str(REPO / "config" / "callsec.conf"), "check-config"]) == 0


def test_relative_paths_follow_the_config_file_not_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etc" / "secrets").mkdir(parents=True)
    (tmp_path / "etc" / "secrets" / "ari").write_text("s3cret\n", encoding="utf-8")
    path = tmp_path / "etc" / "callsec.conf"
    path.write_text("[ari]\npassword_file = secrets/ari\n[crypto]\nkeyring_dir = ../keys\n"
                    "[logging]\nfile = log/callsec.log\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path / "etc" / "secrets")  # somewhere else
    settings = load_settings(path, env={})
    assert settings.base_dir == tmp_path / "etc"
    assert settings.crypto.keyring_dir == tmp_path / "keys"
    assert settings.logging.file == tmp_path / "etc" / "log" / "callsec.log"
    assert settings.sms.outbox_dir == tmp_path / "etc" / "var" / "outbox"  # defaults too
    assert settings.ari.password == "s3cret"


def test_shipped_config_points_at_the_repos_var_from_any_directory(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(REPO / "config" / "callsec.conf", env={})
    assert settings.crypto.keyring_dir == REPO / "var" / "keys"
    assert str(settings.database.url) == "sqlite:///../var/callsec.db"
    assert settings.base_dir == REPO / "config"


@pytest.mark.parametrize("where", ["file", "env"])
def test_create_missing_keys_is_refused_pointing_at_keys_init(tmp_path: Path,
                                                              where: str) -> None:
    text = "[crypto]\ncreate_missing_keys = yes\n" if where == "file" else ""
    env = {"CALLSEC_CRYPTO__CREATE_MISSING_KEYS": "yes"} if where == "env" else {}
    with pytest.raises(ConfigError, match=r"\[crypto\] create_missing_keys: .*callsec keys init"):
        load_settings(write(tmp_path, text), env=env)
