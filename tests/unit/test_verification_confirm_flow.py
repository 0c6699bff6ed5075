"""Confirm without typing: the verification flow's transitions for a customer's answer to the
code message (one-time link, SMS reply) and for "this is not me" (pure, no I/O)."""

from collections.abc import Iterable

from callsec_ari.approval import flow as af
from callsec_ari.capture.fields import ValidationContext
from callsec_ari.capture.steering import SteeringOptions
from callsec_ari.connect.flow import ConnectFlow, ConnectOptions
from callsec_ari.core import commands as c
from callsec_ari.core.events import ApprovalChecked, CallStarted, DtmfReceived, PlaybackFinished
from callsec_ari.verification import protocol as p
from callsec_ari.verification.flow import V, VerificationFlow
from callsec_ari.verification.options import VerificationOptions

CUSTOMER = p.CustomerView(ref="C-TEST", has_mobile=True, has_email=True, mobile_tail="78",
                          preferred_method="sms")
METHODS = ("sms", "email", "link", "sms_reply")
AP = "AP-0a1b2c3d4e5f6a7b"


def make(methods: tuple[str, ...] = METHODS, continue_after: bool = True) -> VerificationFlow:
    return VerificationFlow("call-1", VerificationOptions(methods=methods,
                                                          continue_after=continue_after),
                            new_code=lambda n: "482913"[:n])


def of(kind: type, commands: Iterable[c.Command]) -> list:  # type: ignore[type-arg]
    return [x for x in commands if isinstance(x, kind)]


def variables(commands: Iterable[c.Command]) -> dict[str, str]:
    return dict(of(c.SetVariables, commands)[-1].values)


def to_collecting(flow: VerificationFlow, customer: p.CustomerView = CUSTOMER) -> list[c.Command]:
    out = flow.handle(CallStarted(flow="verify", caller_number="+4915112345678", at=0.0))
    out += flow.handle(p.CustomerResult(customer=customer, at=1.0))
    out += flow.handle(p.CodeDelivered(method="sms", at=2.0))
    return out


def test_the_code_message_offers_the_policys_ways_to_answer_without_typing() -> None:
    flow = make()
    out = to_collecting(flow)
    assert of(p.DeliverCode, out)[0].confirm == ("link", "sms_reply")


def test_an_email_message_offers_the_link_but_no_sms_reply() -> None:
    flow = make()
    out = to_collecting(flow, p.CustomerView(ref="C-TEST", has_email=True))
    assert of(p.DeliverCode, out)[0].confirm == ("link",)


def test_a_policy_without_link_or_reply_offers_neither() -> None:
    flow = make(("sms", "email"))
    assert of(p.DeliverCode, to_collecting(flow))[0].confirm == ()


def test_confirm_on_the_link_verifies_the_waiting_caller_with_method_link() -> None:
    flow = make()
    to_collecting(flow)
    out = flow.handle(DtmfReceived(digit="4", at=3.0))  # typing had begun
    out = flow.handle(p.ConfirmationAnswered(confirmed=True, method="link", at=4.0))
    assert variables(out)["CALLSEC_RESULT"] == "verified"
    assert variables(out)["CALLSEC_METHOD"] == "link"
    assert variables(out)["CALLSEC_CUSTOMER"] == "C-TEST"
    assert of(p.RecordVerification, out)[0].method == "link"
    assert flow.state is V.FAREWELL
    done = flow.handle(PlaybackFinished(playback_id=of(c.Play, out)[-1].playback_id))
    assert of(c.ContinueDialplan, done)


def test_confirm_arriving_while_the_code_is_still_being_sent_verifies() -> None:
    flow = make()
    flow.handle(CallStarted(flow="verify", caller_number="+4915112345678", at=0.0))
    flow.handle(p.CustomerResult(customer=CUSTOMER, at=1.0))
    assert flow.state is V.SENDING
    out = flow.handle(p.ConfirmationAnswered(confirmed=True, method="sms_reply", at=1.5))
    assert variables(out)["CALLSEC_METHOD"] == "sms_reply"
    assert flow.handle(p.CodeDelivered(method="sms", at=2.0)) == []  # late answer ignored


def test_this_is_not_me_ends_denied_and_names_no_customer() -> None:
    flow = make()
    to_collecting(flow)
    out = flow.handle(p.ConfirmationAnswered(confirmed=False, method="link", at=4.0))
    assert variables(out) == {"CALLSEC_RESULT": "denied", "CALLSEC_METHOD": "sms",
                              "CALLSEC_CUSTOMER": ""}
    finished = [dict(x.payload) for x in of(c.Publish, out)][-1]
    assert finished["result"] == "denied" and finished["reason"] == "customer_denied"
    assert of(c.StopPlayback, out)  # the code prompt stops at once


def test_an_answer_by_a_method_the_policy_does_not_allow_is_ignored() -> None:
    flow = make(("sms", "email", "link"))
    to_collecting(flow)
    assert flow.handle(p.ConfirmationAnswered(confirmed=True, method="sms_reply", at=4.0)) == []
    assert flow.state is V.COLLECT


def test_an_answer_after_the_verification_ended_is_ignored() -> None:
    flow = make()
    to_collecting(flow)
    flow.handle(p.ConfirmationAnswered(confirmed=False, method="link", at=4.0))
    assert flow.handle(p.ConfirmationAnswered(confirmed=True, method="link", at=5.0)) == []
    assert flow.result == "denied"


def test_a_denied_caller_is_never_connected_even_with_connect_unverified() -> None:
    flow = ConnectFlow("call-1", make(continue_after=False),
                       ConnectOptions(dial_string="PJSIP/1000", connect_unverified=True))
    flow.handle(CallStarted(flow="connect", caller_number="+4915112345678", at=0.0))
    flow.handle(p.CustomerResult(customer=CUSTOMER, at=1.0))
    flow.handle(p.CodeDelivered(method="sms", at=2.0))
    out = flow.handle(p.ConfirmationAnswered(confirmed=False, method="link", at=3.0))
    out += flow.handle(PlaybackFinished(playback_id=of(c.Play, out)[-1].playback_id))
    assert not of(c.DialLeg, out) and of(c.ContinueDialplan, out)
    assert flow.result == "denied"
    assert flow.handle(p.ConfirmationAnswered(confirmed=True, method="link", at=6.0)) == []


def test_a_confirmed_connect_call_dials_the_agent() -> None:
    flow = ConnectFlow("call-1", make(continue_after=False),
                       ConnectOptions(dial_string="PJSIP/1000"))
    flow.handle(CallStarted(flow="connect", caller_number="+4915112345678", at=0.0))
    flow.handle(p.CustomerResult(customer=CUSTOMER, at=1.0))
    flow.handle(p.CodeDelivered(method="sms", at=2.0))
    out = flow.handle(p.ConfirmationAnswered(confirmed=True, method="link", at=3.0))
    out += flow.handle(PlaybackFinished(playback_id=of(c.Play, out)[-1].playback_id))
    assert of(c.DialLeg, out)


# --- approvals: the customer answers the approval message without typing ------------------

def approval_entering() -> af.ApprovalSteering:
    s = af.ApprovalSteering(
        af.ApprovalRequested(approval_id=AP, requested_by="anna", at=0.0),
        ValidationContext(year=2026, month=12),
        SteeringOptions(agent_bridge="callsec-call-X", capture_bridge="callsec-capture-X",
                        customer_ref="C-ABCDEFGH"),
        af.ApprovalOptions(code_digits=4))
    s.start()
    s.muted()
    assert s.stage == "entering"
    return s


def test_confirm_approves_a_payment_while_the_caller_is_at_the_code_prompt() -> None:
    s = approval_entering()
    s.handle(DtmfReceived(digit="1", leg="caller", at=1.0))  # typing had begun
    out = s.handle(ApprovalChecked(approval_id=AP, result="ok", at=2.0))
    done = next(x for x in out if isinstance(x, af.FinishApproval))
    assert done.result == "approved" and s.stage == "done"
    assert any(isinstance(x, c.AddToBridge) and x.bridge_id == "callsec-call-X" for x in out)
    # the code the caller may still type is no longer asked for
    assert s.handle(DtmfReceived(digit="2", leg="caller", at=3.0)) == []


def test_this_is_not_me_declines_a_payment_with_its_reason() -> None:
    s = approval_entering()
    out = s.handle(ApprovalChecked(approval_id=AP, result="denied", at=2.0))
    done = next(x for x in out if isinstance(x, af.FinishApproval))
    assert (done.result, done.reason) == ("declined", "customer_denied")


def test_an_answer_for_another_approval_changes_nothing() -> None:
    s = approval_entering()
    assert s.handle(ApprovalChecked(approval_id="AP-ffffffffffffffff", result="ok",
                                       at=2.0)) == []
    assert s.stage == "entering"
