"""``[cluster]``: node id defaults to the host name, the shared key is read from secret_file,
and bad values are refused naming the key."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from callsec_ari.config_check import load_settings
from callsec_ari.core.errors import ConfigError


def test_node_id_defaults_to_the_host_name_and_the_key_comes_from_a_file(
        tmp_path: Path) -> None:
    key = tmp_path / "cluster.key"
    key.write_text("k" * 32 + "\n", encoding="utf-8")
    conf = tmp_path / "callsec.conf"
    conf.write_text(f"[cluster]\nsecret_file = {key}\nadvertise_url = http://10.0.0.2:8080\n",
                    encoding="utf-8")
    cluster = load_settings(conf, env={}).cluster
    assert cluster.node() == socket.gethostname()
    assert cluster.secret == "k" * 32 and "k" * 32 not in repr(cluster)
    assert cluster.advertise_url == "http://10.0.0.2:8080"
    named = load_settings(conf, env={"CALLSEC_CLUSTER__NODE_ID": "node-2"}).cluster
    assert named.node() == "node-2"


@pytest.mark.parametrize(("line", "key"), [
    ("secret = short", "secret"),
    ("advertise_url = 10.0.0.2:8080", "advertise_url"),
    ("dead_after_seconds = 1.5", "dead_after_seconds"),
    ("heartbeat_seconds = 0", "dead_after_seconds"),
])
def test_bad_cluster_values_are_refused_naming_the_key(tmp_path: Path, line: str,
                                                       key: str) -> None:
    conf = tmp_path / "callsec.conf"
    conf.write_text(f"[cluster]\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(conf, env={})
    assert (err.value.section, err.value.key) == ("cluster", key)
