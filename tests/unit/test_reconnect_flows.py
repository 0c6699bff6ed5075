"""The ARI link dropped and came back (``Resynchronised``) in the middle of a verification: the
keys typed meanwhile were never heard, so the entry starts over with a fresh prompt, nothing
typed before counts, no attempt is spent; a final prompt whose end may have been lost plays
again. In a connect call: one waiting for its ending prompt ends; a capture that ended while
Asterisk was out of reach (its give-back failed) puts the caller back after the reconnect."""

from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from callsec_ari.capture import protocol as cp
from callsec_ari.capture.entry import EntryOptions
from callsec_ari.capture.fields import ValidationContext
from callsec_ari.connect.captures import CaptureOptions
from callsec_ari.connect.flow import ConnectFlow, ConnectOptions, K
from callsec_ari.core import commands as c
from callsec_ari.core.events import (
    CallStarted,
    CommandFailed,
    DtmfReceived,
    LegGone,
    PlaybackFinished,
    Resynchronised,
    TimerExpired,
)
from callsec_ari.verification import protocol as p
from callsec_ari.verification.flow import V, VerificationFlow
from callsec_ari.verification.options import VerificationOptions

CODE = "482913"
CUSTOMER = p.CustomerView(ref="C-TEST", has_mobile=True, mobile_tail="78")


def make(**overrides: object) -> VerificationFlow:
    return VerificationFlow("call-1", VerificationOptions(**overrides),  # type: ignore[arg-type]
                            new_code=lambda n: CODE[:n])


def of(kind: type, commands: Iterable[c.Command]) -> list:  # type: ignore[type-arg]
    return [x for x in commands if isinstance(x, kind)]


def collecting(flow: VerificationFlow, customer: p.CustomerView = CUSTOMER) -> list[c.Command]:
    out = flow.handle(CallStarted(flow="verify", caller_number="+4915112345678"))
    out += flow.handle(p.CustomerResult(customer=customer, at=1.0))
    return out + flow.handle(p.CodeDelivered(method="sms", at=2.0))


def type_keys(flow: VerificationFlow, keys: str, at: float) -> list[c.Command]:
    """Keys typed; a code check the flow counts is answered as the service would (under
    every limit)."""
    out: list[c.Command] = []
    for i, key in enumerate(keys):
        step = flow.handle(DtmfReceived(digit=key, at=at + i * 0.2))
        out += step
        if of(p.CountCheck, step) and not flow.done:
            out += flow.handle(p.CheckCounted(locked=False, at=at + i * 0.2))
    return out


def result_of(out: Iterable[c.Command]) -> str:
    return str(dict(of(c.SetVariables, out)[-1].values)["CALLSEC_RESULT"])


def test_keys_heard_before_the_outage_are_dropped_and_the_code_prompt_restarts() -> None:
    flow = make()
    prompt = of(c.Play, collecting(flow))[-1]
    type_keys(flow, CODE[:3], at=10.0)  # the rest was typed while the link was down: lost
    out = flow.handle(Resynchronised(at=20.0))
    assert flow.state is V.COLLECT and flow.collector.count == 0
    [again] = of(c.Play, out)
    assert again.media == ("sound:callsec/enter-code",)
    assert again.playback_id != prompt.playback_id
    assert of(c.StartTimer, out) == [c.StartTimer(name="entry", seconds=10.0)]
    out = type_keys(flow, CODE + "#", at=25.0)
    assert result_of(out) == "verified"
    assert of(p.RecordVerification, out)[0].checks == 1  # the lost entry spent no attempt


def test_a_prompt_still_playing_at_the_reconnect_is_stopped_first() -> None:
    flow = make()
    prompt = of(c.Play, collecting(flow))[-1]
    out = flow.handle(Resynchronised(at=5.0))
    assert out.index(c.StopPlayback(playback_id=prompt.playback_id)) < \
        out.index(of(c.Play, out)[0])


def test_unknown_caller_is_asked_for_the_number_again_without_spending_a_try() -> None:
    flow = make(customer_number_tries=1)
    flow.handle(CallStarted(flow="verify", caller_number="+4915112345678"))
    flow.handle(p.CustomerResult(customer=None, at=1.0))
    type_keys(flow, "1234", at=2.0)
    out = flow.handle(Resynchronised(at=9.0))
    assert of(c.Play, out)[0].media == ("sound:callsec/enter-customer-number",)
    assert flow.state is V.ASK_NUMBER and flow.number_tries == 0
    out = type_keys(flow, "7654321#", at=10.0)
    assert of(p.LookupCustomer, out)[0].value == "7654321"


def test_authenticator_customer_is_asked_for_the_app_code_again() -> None:
    flow = make()
    flow.handle(CallStarted(flow="verify", caller_number="+4915112345678"))
    flow.handle(p.CustomerResult(customer=p.CustomerView(ref="C-T", has_totp=True), at=1.0))
    out = flow.handle(Resynchronised(at=3.0))
    assert of(c.Play, out)[0].media == ("sound:callsec/enter-totp",)


def test_final_prompt_plays_again_and_only_its_new_end_continues() -> None:
    flow = make()
    collecting(flow)
    out = type_keys(flow, CODE + "#", at=10.0)
    first = of(c.Play, out)[-1]
    out = flow.handle(Resynchronised(at=15.0))
    assert c.StopPlayback(playback_id=first.playback_id) in out
    [again] = of(c.Play, out)
    assert again.media == first.media and again.playback_id != first.playback_id
    assert not of(p.RecordVerification, out)  # recorded once, before the outage
    assert flow.handle(PlaybackFinished(playback_id=first.playback_id)) == []
    done = flow.handle(PlaybackFinished(playback_id=again.playback_id))
    assert [type(x) for x in done] == [c.ContinueDialplan, c.Finish]


def test_a_prompt_asterisk_could_not_be_reached_for_does_not_end_the_entry() -> None:
    flow = make()
    collecting(flow)
    out = flow.handle(TimerExpired(name="entry", at=20.0))  # re-prompt, sent into the outage
    assert of(c.Play, out)
    assert flow.handle(CommandFailed(command=c.Play, error_id="ari_unavailable")) == []
    assert flow.state is V.COLLECT
    flow.handle(Resynchronised(at=23.0))
    assert result_of(type_keys(flow, CODE + "#", at=24.0)) == "verified"


def test_a_prompt_on_a_vanished_channel_still_ends_the_call() -> None:
    flow = make()
    collecting(flow)
    flow.handle(CommandFailed(command=c.Play, error_id="ari_not_found"))
    assert flow.done and flow.result == "hangup"


def test_states_without_an_entry_ignore_the_reconnect() -> None:
    flow = make()
    flow.handle(CallStarted(flow="verify", caller_number="+4915112345678"))
    assert flow.handle(Resynchronised(at=1.0)) == []  # looking up: the service answers anyway
    flow.handle(p.CustomerResult(customer=CUSTOMER, at=1.0))
    assert flow.state is V.SENDING and flow.handle(Resynchronised(at=2.0)) == []


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789", max_size=len(CODE) - 1), st.integers(1, 3))
def test_whatever_was_typed_before_any_number_of_outages_the_code_still_verifies_first_time(
        typed: str, outages: int) -> None:
    flow = make()
    collecting(flow)
    t = 10.0
    for _ in range(outages):
        type_keys(flow, typed, at=t)
        flow.handle(Resynchronised(at=t + 3.0))
        t += 5.0
    out = type_keys(flow, CODE + "#", at=t)
    assert result_of(out) == "verified"
    assert of(p.RecordVerification, out)[0].checks == 1


# --- inside a connect call --------------------------------------------------------------------

def connect_flow() -> ConnectFlow:
    verification = VerificationFlow("k1", VerificationOptions(continue_after=False),
                                    new_code=lambda n: "123456")
    return ConnectFlow("k1", verification, ConnectOptions(dial_string="PJSIP/agent100"))


def test_a_connect_call_still_verifying_is_re_prompted_by_its_verification() -> None:
    flow = connect_flow()
    flow.handle(CallStarted(flow="connect", caller_number="+4915112345678"))
    flow.handle(p.CustomerResult(customer=CUSTOMER, at=1.0))
    flow.handle(p.CodeDelivered(method="sms", at=2.0))
    out = flow.handle(Resynchronised(at=4.0))
    assert flow.state is K.VERIFYING
    assert of(c.Play, out)[0].media == ("sound:callsec/enter-code",)


def test_a_connect_call_waiting_for_its_ending_prompt_ends_after_the_reconnect() -> None:
    flow = connect_flow()
    flow.handle(CallStarted(flow="connect", caller_number="+4915112345678"))
    flow.handle(p.CustomerResult(customer=CUSTOMER, at=1.0))
    flow.handle(p.CodeDelivered(method="sms", at=2.0))
    out: list[c.Command] = []
    for i, key in enumerate("123456#"):
        out += flow.handle(DtmfReceived(digit=key, at=3.0 + i * 0.2))
    out += flow.handle(p.CheckCounted(locked=False, at=4.5))  # the check counted, no limit hit
    flow.handle(PlaybackFinished(playback_id=of(c.Play, out)[-1].playback_id))
    assert flow.state is K.DIALLING
    flow.handle(LegGone(leg="agent", cause="No answer", at=30.0))  # agent-unavailable plays
    assert flow.state_name == "ENDING"
    out = flow.handle(Resynchronised(at=41.0))  # its PlaybackFinished may be lost
    assert flow.done and of(c.ContinueDialplan, out)


def capturing_call() -> ConnectFlow:
    verification = VerificationFlow("k1", VerificationOptions(continue_after=False))
    flow = ConnectFlow("k1", verification, ConnectOptions(
        dial_string="PJSIP/agent100", captures=CaptureOptions(
            context=ValidationContext(year=2026, month=11),
            entry=EntryOptions(max_attempts=1), new_id=lambda: "CP-2")))
    flow.adopt(result="verified", customer_ref="C-1", language="en")
    flow.handle(cp.CaptureRequested(capture_id="CP-1", fields=("card_number",)))
    flow.handle(cp.RecordingMuted(mute=True))
    return flow


def test_a_give_back_lost_in_the_outage_is_redone_after_the_reconnect() -> None:
    flow = capturing_call()
    out = flow.handle(TimerExpired(name="capture-entry", at=30.0))  # no key: the entry times out
    assert c.AddToBridge(bridge_id="callsec-call-k1", leg="caller", absorb_dtmf=True) in out
    for command in (c.RemoveFromBridge, c.AddToBridge, c.DestroyBridge):  # all into the outage
        assert flow.handle(CommandFailed(command=command, error_id="ari_unavailable")) == []
    out = flow.handle(Resynchronised(at=40.0))
    assert out.index(c.RemoveFromBridge(bridge_id="callsec-capture-k1", leg="caller")) < \
        out.index(c.AddToBridge(bridge_id="callsec-call-k1", leg="caller", absorb_dtmf=True))
    assert c.DestroyBridge(bridge_id="callsec-capture-k1") in out
    assert cp.MuteRecording(leg="caller", mute=False) in out
    assert {p.leg for p in of(c.Play, out)} == {"caller", "agent"}  # both hear "cancelled"
    assert flow.handle(Resynchronised(at=50.0)) == []  # once
    assert flow.state is K.CONNECTED


def test_a_give_back_that_reached_asterisk_is_not_redone() -> None:
    flow = capturing_call()
    flow.handle(TimerExpired(name="capture-entry", at=30.0))
    assert flow.handle(Resynchronised(at=40.0)) == []
