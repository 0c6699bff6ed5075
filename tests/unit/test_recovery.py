"""Calls left behind by a dead callsec process: which are orphans (pure planning), and what the
adopted connect flow does with each (pure), plus a websocket reconnect in the middle of a capture."""

from collections.abc import Iterable

from callsec_ari.ari.recovery import stasis_args
from callsec_ari.capture import protocol as cp
from callsec_ari.capture.entry import EntryOptions
from callsec_ari.capture.fields import ValidationContext
from callsec_ari.connect.captures import CaptureOptions
from callsec_ari.connect.flow import ConnectFlow, ConnectOptions, K
from callsec_ari.connect.recovery import Recovered, find_orphans
from callsec_ari.core import commands as c
from callsec_ari.core.events import (
    CallerHungUp,
    DtmfReceived,
    PlaybackFinished,
    Resynchronised,
)
from callsec_ari.verification.flow import VerificationFlow
from callsec_ari.verification.options import VerificationOptions

CALL = "callsec-a-1.7"
AGENT = CALL + "-agent"


def bridges(capture: tuple[str, ...] | None,
            call: tuple[str, ...] | None) -> dict[str, tuple[str, ...]]:
    out = {}
    if capture is not None:
        out[f"callsec-capture-{CALL}"] = capture
    if call is not None:
        out[f"callsec-call-{CALL}"] = call
    return out


def adopted(on_agent_hangup: str = "continue") -> ConnectFlow:
    flow = ConnectFlow(CALL, VerificationFlow(CALL, VerificationOptions(continue_after=False)),
                       ConnectOptions(dial_string="PJSIP/agent100",
                                      on_agent_hangup=on_agent_hangup,
                                      captures=CaptureOptions(
                                          context=ValidationContext(year=2026, month=11),
                                          entry=EntryOptions(), new_id=lambda: "CP-2")))
    flow.adopt(result="verified", customer_ref="C-9", language="de")
    return flow


def of(kind: type, commands: Iterable[c.Command]) -> list:  # type: ignore[type-arg]
    return [x for x in commands if isinstance(x, kind)]


# --- which calls are orphans ---------------------------------------------------------------------

def test_a_captured_caller_with_the_agent_waiting_is_an_orphan_to_return() -> None:
    [orphan] = find_orphans(bridges((CALL,), (AGENT,)), {CALL, AGENT}, known=lambda _: False)
    assert orphan.call_id == CALL and orphan.capture and orphan.caller_present
    assert orphan.event(1.0) == Recovered(at=1.0, caller_present=True, agent_present=True,
                                          capture=True)


def test_calls_this_process_runs_are_left_to_their_flows() -> None:
    assert find_orphans(bridges((CALL,), (AGENT,)), {CALL, AGENT}, known=lambda _: True) == []


def test_an_agent_channel_outside_the_call_bridge_counts_as_gone() -> None:
    [orphan] = find_orphans(bridges((CALL,), ()), {CALL, AGENT}, known=lambda _: False)
    assert orphan.agent_present and not orphan.event(0).agent_present


def test_empty_bridges_of_a_finished_call_are_orphans_too() -> None:
    [orphan] = find_orphans(bridges((), ()), set(), known=lambda _: False)
    assert not orphan.caller_present and not orphan.agent_bridged


def test_bridges_not_named_by_callsec_are_ignored() -> None:
    assert find_orphans({"rec-bridge-1": (CALL,), "callsec-capture-": ()}, {CALL},
                        known=lambda _: False) == []


def test_stasis_args_come_from_the_callers_dialplan_app_data() -> None:
    raw = {"dialplan": {"app_name": "Stasis", "app_data": "callsec,connect,PJSIP/agent100,lang=de"}}
    assert stasis_args(raw) == ["connect", "PJSIP/agent100", "lang=de"]
    assert stasis_args({}) == [] and stasis_args({"dialplan": {"app_data": 7}}) == []


# --- what the adopted flow does -----------------------------------------------------------------

def test_adopted_caller_returns_to_the_agent_and_the_capture_is_closed() -> None:
    flow = adopted()
    assert flow.state is K.CONNECTED and flow.result == "verified"
    out = flow.handle(Recovered(caller_present=True, agent_present=True, capture=True))
    assert out.index(c.RemoveFromBridge(bridge_id=f"callsec-capture-{CALL}", leg="caller")) < \
        out.index(c.AddToBridge(bridge_id=f"callsec-call-{CALL}", leg="caller",
                                absorb_dtmf=True))
    assert c.DestroyBridge(bridge_id=f"callsec-capture-{CALL}") in out
    assert cp.CloseOpenCaptures(reason="callsec_restart") in out
    assert cp.MuteRecording(leg="caller", mute=False) in out
    assert {p.leg for p in of(c.Play, out)} == {"caller", "agent"}
    assert [p.language for p in of(c.Play, out) if p.leg == "caller"] == ["de"]
    assert flow.state is K.CONNECTED and not of(c.HangupLeg, out)


def test_adopted_call_is_torn_down_by_a_later_caller_hangup() -> None:
    flow = adopted()
    flow.handle(Recovered(caller_present=True, agent_present=True, capture=True))
    out = flow.handle(CallerHungUp())
    assert c.HangupLeg(leg="agent") in out and flow.done and flow.result == "verified"


def test_adopted_call_accepts_a_new_capture() -> None:
    flow = adopted()
    flow.handle(Recovered(caller_present=True, agent_present=True, capture=True))
    out = flow.handle(cp.CaptureRequested(capture_id="CP-3", fields=("iban",)))
    assert cp.MuteRecording(leg="caller", mute=True) in out
    assert flow.capture is not None and flow.capture.o.customer_ref == "C-9"


def test_agent_gone_plays_agent_left_then_continues_in_the_dialplan() -> None:
    flow = adopted()
    out = flow.handle(Recovered(caller_present=True, agent_present=False, capture=True))
    assert not of(c.AddToBridge, out) and c.HangupLeg(leg="agent") in out
    [play] = of(c.Play, out)
    assert play.media == ("sound:callsec/agent-left",) and flow.state is K.ENDING
    out = flow.handle(PlaybackFinished(playback_id=play.playback_id))
    assert [type(x) for x in out] == [c.ContinueDialplan, c.Finish]


def test_agent_gone_with_hangup_policy_hangs_up_after_the_prompt() -> None:
    flow = adopted(on_agent_hangup="hangup")
    [play] = of(c.Play, flow.handle(Recovered(caller_present=True, agent_present=False,
                                              capture=True)))
    assert of(c.Hangup, flow.handle(PlaybackFinished(playback_id=play.playback_id)))


def test_caller_gone_destroys_both_bridges_and_ends_the_agent_leg() -> None:
    flow = adopted()
    out = flow.handle(Recovered(caller_present=False, agent_present=True, capture=True))
    assert {d.bridge_id for d in of(c.DestroyBridge, out)} == {f"callsec-capture-{CALL}",
                                                              f"callsec-call-{CALL}"}
    assert c.HangupLeg(leg="agent") in out and not of(cp.MuteRecording, out)
    assert cp.CloseOpenCaptures(reason="callsec_restart") in out and flow.done


def test_a_connected_call_without_capture_is_adopted_silently() -> None:
    flow = adopted()
    out = flow.handle(Recovered(caller_present=True, agent_present=True, capture=False))
    assert [type(x) for x in out] == [c.Publish] and flow.state is K.CONNECTED


# --- a websocket reconnect in the middle of a capture ------------------------------------------

def test_reconnect_mid_capture_gives_the_caller_back_and_keeps_no_digits() -> None:
    flow = adopted()
    flow.handle(cp.CaptureRequested(capture_id="CP-3", fields=("card_number",)))
    flow.handle(cp.RecordingMuted(mute=True))
    for i, key in enumerate("41111111"):
        flow.handle(DtmfReceived(digit=key, at=10 + i * 0.2))
    capture = flow.capture
    assert capture is not None
    out = flow.handle(Resynchronised())
    assert capture.stage == "done" and capture.result == "cancelled"
    assert c.AddToBridge(bridge_id=f"callsec-call-{CALL}", leg="caller", absorb_dtmf=True) in out
    [record] = of(cp.RecordCapture, out)
    assert record.reason == "reconnect" and "4111" not in repr(out)
    assert capture.entry.values == {}


def test_reconnect_while_muting_cancels_before_the_caller_moves() -> None:
    flow = adopted()
    flow.handle(cp.CaptureRequested(capture_id="CP-3", fields=("card_number",)))
    out = flow.handle(Resynchronised())
    assert not of(c.AddToBridge, out) and of(cp.RecordCapture, out)
    assert flow.handle(cp.RecordingMuted(mute=True)) == []  # late answer: nothing moves


def test_reconnect_without_capture_changes_nothing() -> None:
    flow = adopted()
    assert flow.handle(Resynchronised()) == [] and flow.state is K.CONNECTED
