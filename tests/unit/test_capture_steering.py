"""Agent-requested capture inside a connect call: steering, masking, failures (pure)."""

from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from callsec_ari.capture import protocol as cp
from callsec_ari.capture.entry import EntryOptions
from callsec_ari.capture.fields import ValidationContext, iban_check_digits
from callsec_ari.connect.captures import CaptureOptions
from callsec_ari.connect.flow import ConnectFlow, ConnectOptions, K
from callsec_ari.core import commands as c
from callsec_ari.core.events import (
    CallerHungUp,
    CallStarted,
    CommandFailed,
    DtmfReceived,
    LegAnswered,
    LegGone,
    PlaybackFinished,
    TimerExpired,
)
from callsec_ari.verification.flow import VerificationFlow
from callsec_ari.verification.options import VerificationOptions

PAN, EXPIRY, CVV = "4111111111111111", "1230", "123"
AMEX = "378282246310005"
CTX = ValidationContext(year=2026, month=11)


def connected(confirm_twice: bool = False) -> ConnectFlow:
    verification = VerificationFlow("k1", VerificationOptions(require_code="never",
                                                              continue_after=False))
    flow = ConnectFlow("k1", verification, ConnectOptions(
        dial_string="PJSIP/agent100",
        captures=CaptureOptions(context=CTX, entry=EntryOptions(confirm_twice=confirm_twice),
                                new_id=lambda: "CP-KEYPAD")))
    flow.handle(CallStarted(flow="connect", caller_number="+4915112345678"))
    flow.handle(LegAnswered(leg="agent"))
    assert flow.state is K.CONNECTED
    return flow


def of(kind: type, commands: Iterable[c.Command]) -> list:  # type: ignore[type-arg]
    return [x for x in commands if isinstance(x, kind)]


def start_capture(flow: ConnectFlow, fields: tuple[str, ...] = ("card_number", "expiry", "cvv"),
                  ) -> list[c.Command]:
    out = flow.handle(cp.CaptureRequested(capture_id="CP-1", fields=fields))
    assert of(cp.MuteRecording, out) == [cp.MuteRecording(leg="caller", mute=True)]
    return flow.handle(cp.RecordingMuted(mute=True))


def keys(flow: ConnectFlow, digits: str, leg: str = "caller", at: float = 10.0) -> list[c.Command]:
    out: list[c.Command] = []
    for i, key in enumerate(digits):
        out += flow.handle(DtmfReceived(digit=key, leg=leg, at=at + i * 0.2))
    return out


def test_caller_moves_to_capture_bridge_absorbing_dtmf_after_mute() -> None:
    flow = connected()
    out = start_capture(flow)
    assert c.RemoveFromBridge(bridge_id="callsec-call-k1", leg="caller") in out
    join = of(c.AddToBridge, out)[0]
    assert join.bridge_id == "callsec-capture-k1" and join.leg == "caller" and join.absorb_dtmf
    agent_loop = [x for x in of(c.Play, out) if x.leg == "agent"]
    assert agent_loop and "customer-entering-details" in agent_loop[0].media[0]
    prompt = [x for x in of(c.Play, out) if x.leg == "caller"][0]
    assert prompt.media == ("sound:callsec/enter-card-number",)


def test_full_card_capture_stores_values_and_returns_caller() -> None:
    flow = connected()
    start_capture(flow)
    out = keys(flow, PAN + "#") + keys(flow, EXPIRY, at=20.0) + keys(flow, CVV, at=30.0)
    store = of(cp.StoreCapture, out)[0]
    assert dict(store.values)["card_number"].reveal() == PAN
    assert dict(dict(store.masked)["card_number"]) == {"length": 16, "valid": True,
                                                       "brand": "visa", "last4": "1111"}
    assert PAN not in repr(out) and CVV not in repr(store)
    back = flow.handle(cp.CaptureStored(capture_id="CP-1"))
    assert c.AddToBridge(bridge_id="callsec-call-k1", leg="caller", absorb_dtmf=True) in back
    assert c.DestroyBridge(bridge_id="callsec-capture-k1") in back
    assert cp.MuteRecording(leg="caller", mute=False) in back
    finished = [x for x in of(c.Publish, back) if dict(x.payload).get("stage") == "finished"][0]
    assert dict(finished.payload)["last4"] == "1111"


def test_progress_shows_dots_brand_and_never_digits() -> None:
    flow = connected()
    start_capture(flow)
    out = keys(flow, PAN[:8])
    payloads = [dict(x.payload) for x in of(c.Publish, out)]
    assert payloads[-1]["dots"] == "••••••••" and payloads[-1]["brand"] == "visa"
    assert all(PAN[:6] not in repr(x) for x in payloads)


def test_invalid_luhn_reprompts_then_invalid_after_three_attempts() -> None:
    flow = connected()
    start_capture(flow)
    bad = PAN[:-1] + "2"
    out = keys(flow, bad + "#")
    assert "sound:callsec/entry-check-failed" in of(c.Play, out)[0].media
    keys(flow, bad + "#", at=20.0)
    out = keys(flow, bad + "#", at=30.0)
    assert not of(cp.StoreCapture, out)
    record = of(cp.RecordCapture, out)[0]
    assert record.result == "invalid"
    assert c.AddToBridge(bridge_id="callsec-call-k1", leg="caller", absorb_dtmf=True) in out


def test_amex_takes_a_four_digit_cvv() -> None:
    flow = connected()
    start_capture(flow)
    out = keys(flow, AMEX + "#") + keys(flow, EXPIRY, at=20.0) + keys(flow, "1234", at=30.0)
    store = of(cp.StoreCapture, out)[0]
    assert dict(store.values)["cvv"].reveal() == "1234"


def test_expired_card_is_refused() -> None:
    flow = connected()
    start_capture(flow)
    keys(flow, PAN + "#")
    out = keys(flow, "0120", at=20.0)
    published = [dict(x.payload) for x in of(c.Publish, out)]
    assert any(x.get("reason_id") == "expired" for x in published)


def test_mute_failure_means_no_capture_and_caller_stays() -> None:
    flow = connected()
    flow.handle(cp.CaptureRequested(capture_id="CP-1", fields=("iban",)))
    out = flow.handle(CommandFailed(command=cp.MuteRecording, error_id="ami_unavailable"))
    assert not of(c.RemoveFromBridge, out)
    failed = [dict(x.payload) for x in of(c.Publish, out)][0]
    assert failed["reason"] == "recording_mute_failed"
    assert of(cp.RecordCapture, out)[0].result == "cancelled"


def test_agent_keypad_star_one_starts_a_card_capture() -> None:
    flow = connected()
    out = keys(flow, "*1", leg="agent")
    assert of(cp.MuteRecording, out)
    assert flow.capture is not None and flow.capture.request.fields == ("card_number", "expiry", "cvv")


def test_agent_digits_during_capture_are_ignored() -> None:
    flow = connected()
    start_capture(flow)
    assert keys(flow, "123", leg="agent") == []


def test_caller_hangup_mid_capture_discards_digits_and_records_hangup() -> None:
    flow = connected()
    start_capture(flow)
    keys(flow, PAN[:10])
    out = flow.handle(CallerHungUp())
    assert of(cp.RecordCapture, out)[0].result == "hangup"
    assert flow.done


def test_agent_hangup_mid_capture_tells_caller_then_continues() -> None:
    flow = connected()
    start_capture(flow)
    out = flow.handle(LegGone(leg="agent"))
    prompt = [x for x in of(c.Play, out) if "agent-left" in x.media[0]][0]
    assert of(cp.RecordCapture, out)[0].reason == "agent_left"
    out = flow.handle(PlaybackFinished(playback_id=prompt.playback_id))
    assert of(c.ContinueDialplan, out)


def test_capture_timeout_returns_caller() -> None:
    flow = connected()
    start_capture(flow)
    out = flow.handle(TimerExpired(name="capture-overall"))
    assert of(cp.RecordCapture, out)[0].result == "timeout"
    assert c.AddToBridge(bridge_id="callsec-call-k1", leg="caller", absorb_dtmf=True) in out


def test_cancel_returns_caller() -> None:
    flow = connected()
    start_capture(flow)
    out = flow.handle(cp.CaptureCancelled(capture_id="CP-1", by="agent"))
    assert of(cp.RecordCapture, out)[0].result == "cancelled"


def test_confirm_twice_mismatch_counts_as_failed_attempt() -> None:
    flow = connected(confirm_twice=True)
    start_capture(flow, ("iban",))
    iban = "89370400440532013000"
    out = keys(flow, iban + "#")
    assert "sound:callsec/enter-again-to-confirm" in of(c.Play, out)[-1].media
    other = iban_check_digits("DE", "370400440532013001") + "370400440532013001"
    out = keys(flow, other + "#", at=30.0)
    assert any(dict(x.payload).get("reason_id") == "confirm_mismatch" for x in of(c.Publish, out))
    keys(flow, iban + "#", at=40.0)
    out = keys(flow, iban + "#", at=50.0)
    assert dict(of(cp.StoreCapture, out)[0].values)["iban"].reveal() == iban


def test_second_capture_while_one_runs_is_rejected() -> None:
    flow = connected()
    start_capture(flow)
    out = flow.handle(cp.CaptureRequested(capture_id="CP-2", fields=("iban",)))
    assert dict(of(c.Publish, out)[0].payload)["reason"] == "busy"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.sampled_from("0123456789*#"), st.just("T")), max_size=120))
def test_any_caller_keys_and_timeouts_end_the_capture_in_a_defined_result(steps: list[str]) -> None:
    flow = connected()
    start_capture(flow)
    t = 10.0
    for step in steps:
        t += 0.25
        if step == "T":
            flow.handle(TimerExpired(name="capture-entry", at=t))
        else:
            flow.handle(DtmfReceived(digit=step, at=t))
        capture = flow.capture
        assert capture is not None
        if capture.stage == "storing":
            flow.handle(cp.CaptureStored(capture_id="CP-1"))
        if capture.stage == "done":
            break
    if flow.capture is not None and flow.capture.stage != "done":
        flow.handle(TimerExpired(name="capture-overall", at=t + 1))
    assert flow.capture is not None and flow.capture.result in {"captured", "invalid", "timeout"}
    assert flow.state is K.CONNECTED
