"""The client address behind trusted proxies, and the [web] login keys' checks (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from callsec_ari.config_check import load_settings
from callsec_ari.core.errors import ConfigError
from callsec_ari.web.clientaddr import client_address, trusted_networks

PROXIES = trusted_networks(("10.0.0.0/8", "192.0.2.1", "fd00::/8"))


@pytest.mark.parametrize(("peer", "header", "expected"), [
    # no trusted proxy in front: the header is whatever the client wrote
    ("198.51.100.7", ["1.2.3.4"], "198.51.100.7"),
    ("198.51.100.7", [], "198.51.100.7"),
    # a trusted proxy: the right-most hop that is not a trusted proxy
    ("10.0.0.5", ["203.0.113.9"], "203.0.113.9"),
    ("10.0.0.5", ["1.1.1.1, 203.0.113.9"], "203.0.113.9"),  # the left part is the client's
    ("10.0.0.5", ["203.0.113.9, 10.2.3.4"], "203.0.113.9"),  # a chain of trusted proxies
    ("10.0.0.5", ["1.1.1.1", "203.0.113.9, 192.0.2.1"], "203.0.113.9"),  # two header lines
    ("10.0.0.5", [], "10.0.0.5"),
    ("10.0.0.5", ["10.9.9.9"], "10.9.9.9"),  # all trusted: the farthest one
    ("10.0.0.5", ["garbage, 203.0.113.9"], "203.0.113.9"),
    ("10.0.0.5", ["203.0.113.9, garbage"], "10.0.0.5"),  # a bad hop ends the walk
    ("10.0.0.5", ["203.0.113.9:4711"], "203.0.113.9"),
    ("10.0.0.5", ["[2001:db8::1]:443"], "2001:db8::1"),
    ("fd00::1", ["2001:db8::7"], "2001:db8::7"),
    ("::ffff:10.0.0.5", ["203.0.113.9"], "203.0.113.9"),  # v4-mapped peer
    (None, ["203.0.113.9"], ""),
])
def test_client_address(peer: str | None, header: list[str], expected: str) -> None:
    assert client_address(peer, header, PROXIES) == expected


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    assert client_address("127.0.0.1", ["203.0.113.9"], ()) == "127.0.0.1"


def _config(tmp_path: Path, web: str) -> Path:
    path = tmp_path / "c.conf"
    path.write_text("[web]\n" + web, encoding="utf-8")
    return path


@pytest.mark.parametrize(("line", "key"), [
    ("trusted_proxies = 10.0.0.0/8, proxy.example\n", "trusted_proxies"),
    ("trusted_proxies = 10.0.0.300\n", "trusted_proxies"),
    ("session_idle_minutes = 0\n", "session_idle_minutes"),
    ("session_idle_minutes = 2000\n", "session_idle_minutes"),
    ("login_delay_seconds = 0\n", "login_delay_seconds"),
    ("login_delay_seconds = 1000\n", "login_delay_seconds"),  # above login_lockout_seconds
    ("login_max_failures = 0\n", "login_max_failures"),
    ("login_lockout_seconds = 0\n", "login_lockout_seconds"),
])
def test_bad_login_keys_are_refused_naming_the_key(tmp_path: Path, line: str,
                                                   key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_config(tmp_path, line), env={})
    assert caught.value.key == key and caught.value.section == "web"


def test_login_keys_load(tmp_path: Path) -> None:
    web = load_settings(_config(tmp_path, "trusted_proxies = 127.0.0.1, ::1, 10.0.0.0/8\n"
                                          "session_idle_minutes = 0.5\n"), env={}).web
    assert web.trusted_proxies == ("127.0.0.1", "::1", "10.0.0.0/8")
    assert web.session_idle_minutes == 0.5
    assert len(trusted_networks(web.trusted_proxies)) == 3
