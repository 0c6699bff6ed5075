"""The two-node examples under config/cluster/ (README "Cluster deployment: two nodes") load,
differ only where nodes must, and the Asterisk side names both nodes' apps."""

from __future__ import annotations

import re
from pathlib import Path

from callsec_ari.config import Settings
from callsec_ari.config_check import load_settings

CLUSTER = Path(__file__).resolve().parents[2] / "config" / "cluster"


def node(n: int, tmp_path: Path) -> Settings:
    etc = tmp_path / "etc"
    (etc / "keys").mkdir(parents=True, exist_ok=True)
    (etc / "ari.password").write_text("ari-password\n")
    (etc / "cluster.key").write_text("a-cluster-key-of-32-characters-x\n")
    text = (CLUSTER / f"node{n}.conf").read_text().replace("/etc/callsec/", f"{etc}/")
    path = tmp_path / f"node{n}.conf"
    path.write_text(text)
    return load_settings(path, env={})


def test_two_nodes_share_database_keys_and_asterisk_but_not_identity(tmp_path: Path) -> None:
    one, two = node(1, tmp_path), node(2, tmp_path)
    assert (one.ari.app, two.ari.app) == ("callsec-node1", "callsec-node2")
    assert one.cluster.node() != two.cluster.node()
    assert one.cluster.advertise_url != two.cluster.advertise_url
    assert one.database.url == two.database.url and one.database.url.startswith("postgresql")
    assert one.ari.urls == two.ari.urls
    assert one.crypto.keyring_dir == two.crypto.keyring_dir
    assert str(one.cluster.secret) == str(two.cluster.secret) != ""


def test_the_dialplan_deals_calls_to_both_apps() -> None:
    text = (CLUSTER / "extensions.conf").read_text()
    apps = re.search(r"^CALLSEC_APP=(.+)$", text, re.M)
    assert apps is not None and apps.group(1).split("&") == ["callsec-node1", "callsec-node2"]
    assert '#include "extensions_callsec.conf"' in text and "no_node" in text
