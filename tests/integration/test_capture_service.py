"""The capture service with a real SQLite store: muting recordings (what AMI answers mapped
to success or failure), the API's refusals, records and audit entries without values, and
reveal through the vault's permission callback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from callsec_ari.ami.errors import (
    AmiActionError,
    AmiAuthError,
    AmiConnectionError,
    AmiNoSuchChannel,
)
from callsec_ari.capture import protocol as cp
from callsec_ari.capture.errors import (
    CallNotConnected,
    CaptureNotFound,
    CaptureRunning,
    RecordingMuteFailed,
)
from callsec_ari.capture.service import CaptureFeature
from callsec_ari.capture.sinks import VaultSink
from callsec_ari.config_check import load_settings
from callsec_ari.connect.flow import ConnectFlow, K
from callsec_ari.core.digits import SensitiveDigits
from callsec_ari.core.errors import Forbidden, InvalidInput
from callsec_ari.core.events import CallStarted
from callsec_ari.core.ports import CallContext, CallHandle
from callsec_ari.flows import FlowRegistry
from callsec_ari.logs import call_logger
from callsec_ari.probe.flow import ProbeFlow
from callsec_ari.runtime.dispatcher import Dispatcher
from callsec_ari.runtime.executor import CallExecutor
from callsec_ari.store.context import Store, init_keys, open_store

IBAN_DIGITS = "89370400440532013000"


class Muter:
    """An AMI stand-in answering like ``AmiLink.mixmonitor_mute`` (or raising ``error``)."""

    def __init__(self, answer: int = 1, error: Exception | None = None) -> None:
        self.answer, self.error = answer, error
        self.calls: list[tuple[str, str, bool]] = []

    async def mixmonitor_mute(self, channel: str, *,
                              direction: Literal["read", "write", "both"] = "both",
                              mute: bool) -> int:
        self.calls.append((channel, direction, mute))
        if self.error is not None:
            raise self.error
        return self.answer


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    config = tmp_path / "callsec.conf"
    config.write_text(f"[database]\nurl = sqlite:///{tmp_path / 'callsec.db'}\n"
                      f"[crypto]\nkeyring_dir = {tmp_path / 'keys'}\n", encoding="utf-8")
    settings = load_settings(config, env={})
    init_keys(settings)  # keys are created only on purpose
    opened = open_store(settings)
    yield opened
    opened.close()


def feature(store: Store, muter: Muter | None = None) -> CaptureFeature:
    return CaptureFeature(store, Dispatcher(CallExecutor()), VaultSink(store.vault, "DE"),
                          ami=lambda: muter)


def handle(flow: object = None, agent: str | None = None) -> CallHandle:
    call_id = "call-1"
    return CallHandle(call_id=call_id, flow=flow or ProbeFlow(call_id),  # type: ignore[arg-type]
                      log=call_logger(logging.getLogger("test"), call_id),
                      context=CallContext(channel_name="PJSIP/pstn-00000001",
                                          endpoints={"agent": agent} if agent else {}))


def connect_flow(state: K = K.CONNECTED) -> ConnectFlow:
    flow = FlowRegistry(load_settings(None, env={})).connect(
        "call-1", CallStarted(flow="connect", args=("PJSIP/agent100",)))
    assert isinstance(flow, ConnectFlow)
    flow.resume(state)
    return flow


# --- MuteRecording ----------------------------------------------------------------------------

async def test_mute_reaches_ami_for_the_callers_channel_both_directions(store: Store) -> None:
    muter = Muter(answer=1)
    events = await feature(store, muter).mute_recording(
        handle(), cp.MuteRecording(leg="caller", mute=True))
    assert muter.calls == [("PJSIP/pstn-00000001", "both", True)]
    assert events[0] == cp.RecordingMuted(mute=True, count=1, at=events[0].at)


async def test_a_channel_without_mixmonitor_is_no_failure(store: Store) -> None:
    events = await feature(store, Muter(answer=0)).mute_recording(
        handle(), cp.MuteRecording(leg="caller", mute=True))
    assert isinstance(events[0], cp.RecordingMuted) and events[0].count == 0
    # the same when an AMI layer reports Asterisk's own answer as an error
    error = AmiActionError("x", action="MixMonitorMute", ami_message="Cannot set mute flag")
    events = await feature(store, Muter(error=error)).mute_recording(
        handle(), cp.MuteRecording(leg="caller", mute=True))
    assert isinstance(events[0], cp.RecordingMuted) and events[0].count == 0


@pytest.mark.parametrize("error", [
    AmiConnectionError("down"), AmiAuthError("refused"), AmiNoSuchChannel("gone"),
    AmiActionError("x", action="MixMonitorMute", ami_message="Permission denied")])
async def test_ami_down_or_refusing_fails_the_mute(store: Store, error: Exception) -> None:
    with pytest.raises(RecordingMuteFailed):
        await feature(store, Muter(error=error)).mute_recording(
            handle(), cp.MuteRecording(leg="caller", mute=True))


async def test_no_channel_name_fails_and_disabled_ami_mutes_nothing(store: Store) -> None:
    call = handle()
    call.context.channel_name = None
    with pytest.raises(RecordingMuteFailed):
        await feature(store, Muter()).mute_recording(call, cp.MuteRecording(leg="caller",
                                                                            mute=True))
    events = await feature(store, None).mute_recording(handle(), cp.MuteRecording(
        leg="caller", mute=True))
    assert isinstance(events[0], cp.RecordingMuted) and events[0].count == 0


async def test_a_capture_start_mutes_beside_its_row_and_unmutes_when_the_row_fails(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from callsec_ari.capture import handlers
    from callsec_ari.store.errors import DatabaseUnavailable

    monkeypatch.setattr(handlers, "active_capture", lambda call: object())
    muter = Muter(answer=1)
    captured = feature(store, muter)
    started: list[str] = []

    async def record_start(call: CallHandle, capture: object) -> None:
        started.append(call.call_id)
        await asyncio.sleep(0)  # the mute runs meanwhile

    monkeypatch.setattr(captured, "record_start", record_start)
    events = await captured.mute_recording(handle(), cp.MuteRecording(leg="caller", mute=True))
    assert started == ["call-1"] and muter.calls == [("PJSIP/pstn-00000001", "both", True)]
    assert isinstance(events[0], cp.RecordingMuted) and events[0].count == 1

    async def failing(call: CallHandle, capture: object) -> None:
        await asyncio.sleep(0)
        raise DatabaseUnavailable("the database is down")

    monkeypatch.setattr(captured, "record_start", failing)
    muter.calls.clear()
    with pytest.raises(DatabaseUnavailable):
        await captured.mute_recording(handle(), cp.MuteRecording(leg="caller", mute=True))
    assert muter.calls[-1] == ("PJSIP/pstn-00000001", "both", False)  # unmuted again


# --- the API side -------------------------------------------------------------------------------

async def test_request_refuses_unknown_fields_unconnected_calls_and_a_second_capture(
        store: Store) -> None:
    service = feature(store, Muter())
    with pytest.raises(InvalidInput):
        await service.request(handle(connect_flow()), ["card_number", "pin"], actor="user:anna")
    with pytest.raises(CallNotConnected):
        await service.request(handle(connect_flow(K.DIALLING)), ["iban"], actor="user:anna")
    with pytest.raises(CallNotConnected):
        await service.request(handle(), ["iban"], actor="user:anna")  # not a connect call
    flow = connect_flow()
    call = handle(flow, agent="PJSIP/agent100")
    capture_id = await service.request(call, ["iban"], actor="user:anna")
    assert capture_id.startswith("CP-") and call.context.capture == capture_id
    flow.handle(cp.CaptureRequested(capture_id=capture_id, fields=("iban",)))  # what the
    with pytest.raises(CaptureRunning):                       # dispatcher would deliver
        await service.request(call, ["card_number"], actor="user:anna")
    with pytest.raises(CaptureNotFound):
        await service.cancel(call, "CP-0000000000000000", actor="user:anna")
    info = await service.get(capture_id)
    assert (info.state, info.agent_endpoint) == ("requested", "PJSIP/agent100")
    entry = store.audit.tail()[-1]
    assert (entry.action, entry.actor, entry.target) == ("capture.requested", "user:anna",
                                                         capture_id)


async def test_stored_capture_is_masked_audited_and_revealable_only_as_allowed(
        store: Store) -> None:
    service = feature(store, Muter())
    iban = SensitiveDigits(capacity=20)
    for ch in IBAN_DIGITS:
        iban.append(ch)
    masked = (("iban", (("length", 20), ("valid", True), ("country", "DE"), ("last4", "00"))),)
    stored = await service.store_capture(handle(), cp.StoreCapture(
        capture_id="CP-00000000000000bb", customer_ref="", values=(("iban", iban),),
        masked=masked, fields=("iban",), requested_by="user:anna"))
    assert iban.wiped
    assert [kind for kind, _ in stored[0].refs] == ["iban"]  # type: ignore[attr-defined]
    info = await service.get("CP-00000000000000bb")
    assert info.state == "captured" and info.masked["fields"]["iban"]["last4"] == "00"
    assert IBAN_DIGITS not in str(info.to_json())
    assert await service.reveal("CP-00000000000000bb", kinds=frozenset({"national_id"}),
                                actor="user:sven", reason="refund to the account") == {}
    clear = await service.reveal("CP-00000000000000bb", kinds=frozenset({"iban"}),
                                 actor="user:sven", reason="refund to the account")
    assert clear == {"iban": "DE" + IBAN_DIGITS}
    actions = [(e.action, e.actor) for e in store.audit.tail()]
    assert ("capture.finished", "system") in actions and ("vault.reveal", "user:sven") in actions
    assert all(IBAN_DIGITS not in str(e.details) for e in store.audit.tail())
    with pytest.raises(Forbidden):  # the vault's own permission callback still decides
        store.vault.reveal(dict(stored[0].refs)["iban"], actor="user:x",  # type: ignore[attr-defined]
                           reason="curious", allowed=lambda _kind: False)


async def test_a_capture_without_values_is_recorded_with_its_reason(store: Store) -> None:
    service = feature(store, Muter())
    await service.record_capture(handle(), cp.RecordCapture(
        capture_id="CP-00000000000000cc", customer_ref="", result="hangup",
        fields=("card_number",), reason="caller_left", requested_by="agent-keypad"))
    info = await service.get("CP-00000000000000cc")
    assert info.state == "hangup" and info.masked["vault_refs"] == {}
    entry = store.audit.tail()[-1]
    assert entry.details["reason"] == "caller_left" and entry.details["result"] == "hangup"
