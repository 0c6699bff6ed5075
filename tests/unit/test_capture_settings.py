"""``[capture]`` gateway settings: keys whose names end in ``_file`` are keys of their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from callsec_ari.config_check import load_settings
from callsec_ari.core.errors import ConfigError


def test_gateway_tls_files_and_email_ca_file_are_accepted(tmp_path: Path) -> None:
    config = tmp_path / "callsec.conf"
    config.write_text("[capture]\nsink = gateway\ngateway_url = https://pay.example/v1\n"
                      "gateway_cert_file = /etc/callsec/client.pem\n"
                      "gateway_key_file = /etc/callsec/client.key\n"
                      "gateway_ca_file = /etc/callsec/ca.pem\n"
                      "[email]\nca_file = /etc/ssl/ca.pem\n", encoding="utf-8")
    settings = load_settings(config, env={})
    assert settings.capture.gateway_cert_file == Path("/etc/callsec/client.pem")
    assert settings.capture.gateway_key_file == Path("/etc/callsec/client.key")
    assert settings.capture.gateway_ca_file == Path("/etc/callsec/ca.pem")
    assert settings.email.ca_file == Path("/etc/ssl/ca.pem")


def test_the_hmac_key_can_still_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "hmac.key"
    secret.write_text("s3cret\n", encoding="utf-8")
    config = tmp_path / "callsec.conf"
    config.write_text(f"[capture]\ngateway_hmac_key_file = {secret}\n", encoding="utf-8")
    assert str(load_settings(config, env={}).capture.gateway_hmac_key) == "s3cret"
    config.write_text("[capture]\ngateway_nonsense_file = x\n", encoding="utf-8")
    with pytest.raises(ConfigError) as unknown:
        load_settings(config, env={})
    assert unknown.value.key == "gateway_nonsense_file"
