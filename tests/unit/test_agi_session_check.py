"""Whom FastAGI trusts: allowed peers, the session comparison, the ARI check (fail closed) and
the bounded refusal audit. The attacks through the real socket are in
``tests/integration/test_agi_trust.py``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from callsec_ari.agi.confirm import AriSessionCheck
from callsec_ari.agi.protocol import AgiRequest
from callsec_ari.agi.refusals import OTHER_PEERS, PEER_REFUSED, SESSION_REFUSED, RefusalAudit
from callsec_ari.agi.trust import (
    ASTERISK_UNREACHABLE,
    CALLER_ID_MISMATCH,
    CHANNEL_MISMATCH,
    NO_SUCH_CHANNEL,
    NO_UNIQUEID,
    NOT_IN_AGI,
    ChannelFacts,
    PeerFilter,
    check_allowed_peers,
    compare,
    safe_call_id,
)
from callsec_ari.ari.errors import AriConnectionError, AriNotFound, AriServerError
from callsec_ari.config_check import load_settings
from callsec_ari.core.errors import ConfigError

NAME = "PJSIP/pstn-00000007"
NUMBER = "+4915112345678"


def request(*, uniqueid: str = "1718000000.7", channel: str = NAME,
            callerid: str = NUMBER) -> AgiRequest:
    return AgiRequest(script="verify", uniqueid=uniqueid, channel=channel, callerid=callerid)


def channel_json(*, name: str = NAME, number: str = NUMBER, app: str = "AGI") -> dict[str, Any]:
    return {"id": "1718000000.7", "name": name, "state": "Up",
            "caller": {"name": "", "number": number},
            "dialplan": {"context": "sandbox", "exten": "3000", "priority": 2,
                         "app_name": app, "app_data": "agi://127.0.0.1:4573/verify"}}


# --- allowed peers ------------------------------------------------------------------------------

def test_default_peers_are_loopback_only() -> None:
    peers = PeerFilter.from_strings()
    assert peers.allows("127.0.0.1") and peers.allows("127.0.0.2") and peers.allows("::1")
    assert peers.allows("::ffff:127.0.0.1")  # a dual-stack socket's spelling
    assert not peers.allows("10.0.0.5") and not peers.allows("172.18.0.3")
    assert not peers.allows("::ffff:10.0.0.5") and not peers.allows("-")


def test_allowed_peers_takes_addresses_and_networks() -> None:
    peers = PeerFilter.from_strings(["127.0.0.1", "172.18.0.0/16", "fd00::/8"])
    assert peers.allows("127.0.0.1") and not peers.allows("127.0.0.2")
    assert peers.allows("172.18.4.2") and peers.allows("fd00::7")
    assert not peers.allows("172.19.0.1")


@pytest.mark.parametrize("value", ["asterisk", "127.0.0.1/33", "10.0.0.300", ""])
def test_a_bad_allowed_peers_entry_is_a_configuration_error_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings("config/callsec.conf", env={"CALLSEC_AGI__ALLOWED_PEERS": value})
    assert info.value.section == "agi" and info.value.key == "allowed_peers"


def test_shipped_and_sample_configs_pass_the_peer_check() -> None:
    for path in ("config/callsec.conf", "config/callsec.conf.sample", "docker/callsec.conf"):
        check_allowed_peers(load_settings(path, env={}).agi.allowed_peers)


# --- the comparison -----------------------------------------------------------------------------

def test_a_session_matching_its_channel_checks_out() -> None:
    assert compare(request(), ChannelFacts(name=NAME, caller_number=NUMBER,
                                           application="AGI")) is None


def test_withheld_caller_id_is_unknown_on_agi_and_empty_on_ari() -> None:
    assert compare(request(callerid=""), ChannelFacts(name=NAME, caller_number="",
                                                      application="AGI")) is None


@pytest.mark.parametrize(("facts", "reason"), [
    (ChannelFacts(name="PJSIP/pstn-00000008", caller_number=NUMBER, application="AGI"),
     CHANNEL_MISMATCH),
    (ChannelFacts(name=NAME, caller_number="+4915199999999", application="AGI"),
     CALLER_ID_MISMATCH),
    (ChannelFacts(name=NAME, caller_number="", application="AGI"), CALLER_ID_MISMATCH),
    (ChannelFacts(name=NAME, caller_number=NUMBER, application="Wait"), NOT_IN_AGI),
    (ChannelFacts(name=NAME, caller_number=NUMBER, application=""), NOT_IN_AGI),
])
def test_a_session_not_matching_its_channel_is_refused(facts: ChannelFacts, reason: str) -> None:
    assert compare(request(), facts) == reason


def test_a_refused_sessions_call_id_keeps_only_a_uniqueid_shape() -> None:
    assert safe_call_id(request()) == "agi-1718000000.7"
    assert safe_call_id(request(uniqueid="pbx1-1718000000.7")) == "agi-pbx1-1718000000.7"
    assert safe_call_id(request(uniqueid="a b\nc")) == "agi-invalid"
    assert safe_call_id(request(uniqueid="x" * 65)) == "agi-invalid"
    assert safe_call_id(request(uniqueid="4915112345678")) == "agi-invalid"  # a number


# --- the check over ARI -------------------------------------------------------------------------

class FakeAri:
    def __init__(self, answer: Any, name: str = "asterisk1") -> None:
        self.answer = answer
        self.name = name
        self.paths: list[str] = []

    async def request(self, method: str, path: str, *, params: Any = None,
                      json: Any = None) -> Any:
        self.paths.append(f"{method} {path}")
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


async def test_the_check_asks_ari_for_the_uniqueid_and_compares() -> None:
    ari = FakeAri(channel_json())
    assert await AriSessionCheck([ari]).confirm(request()) is None
    assert ari.paths == ["GET /channels/1718000000.7"]
    assert await AriSessionCheck([FakeAri(channel_json(number="+49999"))]).confirm(
        request()) == CALLER_ID_MISMATCH
    assert await AriSessionCheck([FakeAri(channel_json(app="Wait"))]).confirm(
        request()) == NOT_IN_AGI


async def test_a_uniqueid_asterisk_does_not_know_is_refused() -> None:
    gone = AriNotFound(server="asterisk1", method="GET", path="/channels/x", ari_status=404)
    assert await AriSessionCheck([FakeAri(gone)]).confirm(request()) == NO_SUCH_CHANNEL
    assert await AriSessionCheck([FakeAri(gone)]).confirm(request(uniqueid="")) == NO_UNIQUEID


async def test_ari_unreachable_fails_closed_with_a_clear_log_line(caplog) -> None:
    down = AriConnectionError("asterisk1: GET /channels/x: connection refused",
                              server="asterisk1", method="GET", path="/channels/x")
    assert await AriSessionCheck([FakeAri(down)]).confirm(request()) == ASTERISK_UNREACHABLE
    broken = AriServerError(server="asterisk1", method="GET", path="/x", ari_status=500)
    assert await AriSessionCheck([FakeAri(broken)]).confirm(request()) == ASTERISK_UNREACHABLE
    assert "cannot confirm the AGI session with asterisk1" in caplog.text
    assert "refusing it" in caplog.text and NUMBER not in caplog.text


async def test_with_several_asterisks_one_having_the_channel_is_enough() -> None:
    gone = AriNotFound(server="asterisk1", method="GET", path="/channels/x", ari_status=404)
    down = AriConnectionError("down", server="asterisk2", method="GET", path="/x")
    both = [FakeAri(gone), FakeAri(channel_json(), name="asterisk2")]
    assert await AriSessionCheck(both).confirm(request()) is None
    assert await AriSessionCheck([FakeAri(gone), FakeAri(down)]).confirm(
        request()) == ASTERISK_UNREACHABLE


# --- the refusal audit --------------------------------------------------------------------------

class Trail:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, dict[str, Any]]] = []

    def append(self, actor: str, action: str, target: str = "",
               details: Mapping[str, Any] | None = None) -> object:
        assert actor == "system"
        self.rows.append((action, target, dict(details or {})))
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def drain(audit: RefusalAudit) -> None:
    task = asyncio.create_task(audit.run())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_flood_from_one_peer_writes_a_few_rows_and_one_summary() -> None:
    trail, clock = Trail(), Clock()
    audit = RefusalAudit(trail, clock=clock, rows_per_key=2)
    for _ in range(1000):
        audit.peer_refused("10.0.0.9")
    clock.now += 61
    await drain(audit)
    assert trail.rows == [
        (PEER_REFUSED, "10.0.0.9", {"peer": "10.0.0.9"}),
        (PEER_REFUSED, "10.0.0.9", {"peer": "10.0.0.9"}),
        (PEER_REFUSED, "10.0.0.9", {"peer": "10.0.0.9", "repeated": 998, "window_seconds": 60}),
    ]


async def test_a_flood_from_many_source_addresses_is_bounded_too() -> None:
    trail, clock = Trail(), Clock()
    audit = RefusalAudit(trail, clock=clock, rows_per_key=1, max_peers=4)
    for n in range(5000):
        audit.peer_refused(f"127.0.{n // 250}.{n % 250}")
    await drain(audit)
    assert len(trail.rows) == 5  # 4 peers of their own, then the summary when stopping
    assert trail.rows[-1] == (PEER_REFUSED, OTHER_PEERS,
                              {"repeated": 4996, "window_seconds": 60})


async def test_a_refused_session_row_holds_reason_peer_and_flow_only(caplog) -> None:
    trail = Trail()
    audit = RefusalAudit(trail)
    audit.session_refused("127.0.0.1", "agi-1718000000.7", CALLER_ID_MISMATCH, "verify")
    await drain(audit)
    assert trail.rows == [(SESSION_REFUSED, "agi-1718000000.7", {
        "peer": "127.0.0.1", "reason": CALLER_ID_MISMATCH, "flow": "verify"})]
    assert "refused: caller_id_mismatch" in caplog.text


async def test_a_database_fault_while_auditing_is_logged_not_raised(caplog) -> None:
    class Down:
        def append(self, *args: Any, **kwargs: Any) -> object:
            raise OSError("database is locked")

    audit = RefusalAudit(Down())
    audit.peer_refused("10.0.0.9")
    await drain(audit)
    assert "audit entry agi.peer_refused for 10.0.0.9 not written" in caplog.text
