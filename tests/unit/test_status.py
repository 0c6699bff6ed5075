"""`callsec status`: the control socket's answer (masked), the exit codes, the text form."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from callsec_ari import cli
from callsec_ari.runtime.bus import EventBus
from callsec_ari.status import ControlServer, ErrorRing, ask
from callsec_ari.status_cli import render


def fake_app(ring: ErrorRing) -> Any:
    web = SimpleNamespace(enabled=True, host="127.0.0.1", port=8080)
    return SimpleNamespace(
        settings=SimpleNamespace(web=web), adapters=[], ami=None, agi_server=None, web=None,
        dispatcher=[], metrics=None, late_records=[], refusals=None, bus=EventBus(),
        webhook_service=None,
        started_monotonic=0.0, error_ring=ring, cluster=SimpleNamespace(status=lambda: CLUSTER))


CLUSTER = {"node_id": "n1", "advertise_url": "http://10.0.0.1:8080", "read_at": None,
           "nodes": [{"node_id": "n1", "advertise_url": "http://10.0.0.1:8080",
                      "stasis_app": "callsec-n1", "heartbeat_age_seconds": 0.4, "alive": True,
                      "stopped": False, "calls": 3},
                     {"node_id": "n2", "advertise_url": "http://10.0.0.2:8080",
                      "stasis_app": "callsec-n2", "heartbeat_age_seconds": 12.0,
                      "alive": False, "stopped": False, "calls": 1}]}


def test_status_text_shows_each_node_its_heartbeat_and_calls() -> None:
    text = render({"version": "x", "pid": 1, "uptime_seconds": 5, "cluster": CLUSTER})
    assert "Cluster: this node n1 (http://10.0.0.1:8080)" in text
    assert "n1               alive    heartbeat    0.4 s ago, 3 call(s)" in text
    assert "n2               DEAD     heartbeat   12.0 s ago, 1 call(s)" in text


def test_error_ring_keeps_the_last_warnings_redacted() -> None:
    ring = ErrorRing(2)
    logger = logging.getLogger("test.status.ring")
    logger.addHandler(ring)
    try:
        logger.info("not kept")
        logger.warning("first")
        logger.error("code %s for +4915112345678 refused", "123456")
        logger.error("third")
    finally:
        logger.removeHandler(ring)
    messages = [r["message"] for r in ring.records]
    assert messages[0] == "code <redacted> for <redacted> refused" and messages[1] == "third"


async def test_control_socket_answers_status_mode_0600_and_is_removed_at_stop(
        tmp_path: Path) -> None:
    path = tmp_path / "run" / "callsec.ctl"
    ring = ErrorRing(5)
    ring.records.append({"time": 0.0, "level": "ERROR", "logger": "x", "call_id": "-",
                         "message": "boom"})
    server = asyncio.create_task(ControlServer(fake_app(ring), path).serve())
    async with asyncio.timeout(5):
        while not path.exists():
            await asyncio.sleep(0.01)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    answer = await asyncio.to_thread(ask, path)
    assert answer["connections"]["http"] == {"enabled": True, "listen": "127.0.0.1:8080",
                                             "listening": False}
    assert answer["calls"]["active"] == 0 and answer["queues"]["late_records"] == 0
    assert answer["last_errors"][0]["message"] == "boom"
    assert "callsec" in render(answer) and "boom" in render(answer)
    server.cancel()
    with pytest.raises(asyncio.CancelledError):
        await server
    assert not path.exists()


async def test_a_stale_socket_left_by_a_dead_callsec_is_replaced(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "callsec.ctl"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens
    server = asyncio.create_task(ControlServer(fake_app(ErrorRing()), path).serve())
    async with asyncio.timeout(5):
        while True:
            try:
                await asyncio.to_thread(ask, path)
                break
            except OSError:
                await asyncio.sleep(0.02)
    server.cancel()
    with pytest.raises(asyncio.CancelledError):
        await server


def _config(tmp_path: Path, socket_line: str) -> Path:
    conf = tmp_path / "callsec.conf"
    conf.write_text(f"[status]\n{socket_line}\n", encoding="utf-8")
    return conf


def test_status_exits_3_when_callsec_is_not_running(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = _config(tmp_path, "socket = callsec.ctl")
    assert cli.main(["-c", str(conf), "status"]) == 3
    err = capsys.readouterr().err
    assert "callsec is not running" in err and str(tmp_path / "callsec.ctl") in err
    assert cli.main(["-c", str(conf), "status", "--json"]) == 3


def test_status_without_a_socket_is_a_configuration_error(tmp_path: Path) -> None:
    assert cli.main(["-c", str(_config(tmp_path, "socket =")), "status"]) == 2


async def test_status_json_prints_the_answer(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    conf = _config(tmp_path, "socket = callsec.ctl")
    server = asyncio.create_task(
        ControlServer(fake_app(ErrorRing()), tmp_path / "callsec.ctl").serve())
    async with asyncio.timeout(5):
        while not (tmp_path / "callsec.ctl").exists():
            await asyncio.sleep(0.01)
    code = await asyncio.to_thread(cli.main, ["-c", str(conf), "status", "--json"])
    server.cancel()
    assert code == 0
    assert json.loads(capsys.readouterr().out)["connections"]["ari"] == []
