"""The connect flow: verify first, then dial the agent and own the bridge."""

from callsec_ari.connect.flow import ConnectFlow, ConnectOptions, K
from callsec_ari.core import commands as c
from callsec_ari.core.events import (
    CallerHungUp,
    CallStarted,
    DtmfReceived,
    LegAnswered,
    LegGone,
    PlaybackFinished,
    TimerExpired,
)
from callsec_ari.verification import protocol as p
from callsec_ari.verification.flow import VerificationFlow
from callsec_ari.verification.options import VerificationOptions

CUSTOMER = p.CustomerView(ref="C-1", has_mobile=True, mobile_tail="78")


def make(connect_unverified: bool = False, on_agent_hangup: str = "continue") -> ConnectFlow:
    verification = VerificationFlow("k1", VerificationOptions(continue_after=False),
                                    new_code=lambda n: "123456")
    return ConnectFlow("k1", verification, ConnectOptions(
        dial_string="PJSIP/agent100", connect_unverified=connect_unverified,
        on_agent_hangup=on_agent_hangup))


def verify(flow: ConnectFlow, code: str = "123456") -> list[c.Command]:
    flow.handle(CallStarted(flow="connect", caller_number="+4915112345678"))
    flow.handle(p.CustomerResult(customer=CUSTOMER, at=1.0))
    flow.handle(p.CodeDelivered(method="sms", at=2.0))
    out: list[c.Command] = []
    for i, key in enumerate(code + "#"):
        out += flow.handle(DtmfReceived(digit=key, at=3.0 + i * 0.2))
    if any(isinstance(x, p.CountCheck) for x in out):  # the service's answer: under limits
        out += flow.handle(p.CheckCounted(locked=False, at=4.5))
    final = [x for x in out if isinstance(x, c.Play)][-1]
    return out + flow.handle(PlaybackFinished(playback_id=final.playback_id))


def test_agent_is_dialled_only_after_verification() -> None:
    flow = make()
    flow.handle(CallStarted(flow="connect", caller_number="+4915112345678"))
    assert flow.state is K.VERIFYING
    out = verify(make())
    dial = [x for x in out if isinstance(x, c.DialLeg)]
    assert dial and dial[0].endpoint == "PJSIP/agent100"
    assert dial[0].caller_id == "C-1"  # the agent's phone shows the opaque ref, not the number


def test_unverified_caller_is_not_connected_and_returns_to_dialplan() -> None:
    flow = make()
    out: list[c.Command] = []
    flow.handle(CallStarted(flow="connect", caller_number="+4915112345678"))
    flow.handle(p.CustomerResult(customer=CUSTOMER, at=1.0))
    flow.handle(p.CodeDelivered(method="sms", at=2.0))
    for attempt in range(5):
        for i, key in enumerate("000000#"):
            out = flow.handle(DtmfReceived(digit=key, at=10.0 * (attempt + 1) + i * 0.2))
    final = [x for x in out if isinstance(x, c.Play)][-1]
    out = flow.handle(PlaybackFinished(playback_id=final.playback_id))
    assert not any(isinstance(x, c.DialLeg) for x in out)
    assert any(isinstance(x, c.ContinueDialplan) for x in out)
    assert flow.done and flow.result == "locked"


def test_policy_may_connect_unverified() -> None:
    flow = make(connect_unverified=True)
    flow.handle(CallStarted(flow="connect", caller_number="+4915112345678"))
    out = flow.handle(p.CustomerResult(customer=p.CustomerView(ref="C-X"), at=1.0))
    final = [x for x in out if isinstance(x, c.Play)][-1]
    out = flow.handle(PlaybackFinished(playback_id=final.playback_id))
    assert any(isinstance(x, c.DialLeg) for x in out)


def test_both_legs_join_the_bridge_absorbing_dtmf() -> None:
    flow = make()
    verify(flow)
    out = flow.handle(LegAnswered(leg="agent"))
    joins = [x for x in out if isinstance(x, c.AddToBridge)]
    assert {j.leg for j in joins} == {"caller", "agent"}
    assert all(j.absorb_dtmf for j in joins)
    assert flow.state is K.CONNECTED


def test_agent_not_answering_plays_unavailable_and_continues() -> None:
    flow = make()
    verify(flow)
    out = flow.handle(TimerExpired(name="dial"))
    assert any(isinstance(x, c.HangupLeg) for x in out)
    play = [x for x in out if isinstance(x, c.Play)][0]
    out = flow.handle(PlaybackFinished(playback_id=play.playback_id))
    assert [type(x) for x in out] == [c.ContinueDialplan, c.Finish]


def test_caller_hangup_hangs_up_agent_and_destroys_bridge() -> None:
    flow = make()
    verify(flow)
    flow.handle(LegAnswered(leg="agent"))
    out = flow.handle(CallerHungUp())
    assert c.HangupLeg(leg="agent") in out and any(isinstance(x, c.DestroyBridge) for x in out)
    assert flow.done and flow.result == "verified"


def test_agent_hangup_returns_caller_to_dialplan_or_hangs_up() -> None:
    flow = make()
    verify(flow)
    flow.handle(LegAnswered(leg="agent"))
    out = flow.handle(LegGone(leg="agent"))
    assert any(isinstance(x, c.ContinueDialplan) for x in out)
    flow = make(on_agent_hangup="hangup")
    verify(flow)
    flow.handle(LegAnswered(leg="agent"))
    assert any(isinstance(x, c.Hangup) for x in flow.handle(LegGone(leg="agent")))
