"""Channel commands failing under the verification flow (found by ``make soak``: stopping a
prompt that had just ended answered 500): a harmless failure never ends the verification, and
a real one never leaves a caller whose channel is still there sitting in Stasis."""

from callsec_ari.core import commands as c
from callsec_ari.core.events import CallStarted, CommandFailed, DtmfReceived
from callsec_ari.verification import protocol as p
from callsec_ari.verification.flow import V, VerificationFlow
from callsec_ari.verification.options import VerificationOptions

CUSTOMER = p.CustomerView(ref="C-1", has_mobile=True, mobile_tail="78")


def collecting(continue_after: bool = True) -> VerificationFlow:
    flow = VerificationFlow("call-1", VerificationOptions(continue_after=continue_after),
                            new_code=lambda n: "1" * n)
    flow.handle(CallStarted(flow="verify", caller_number="+4915112345678"))
    flow.handle(p.CustomerResult(customer=CUSTOMER))
    flow.handle(p.CodeDelivered(method="sms"))
    assert flow.state is V.COLLECT
    return flow


def test_a_failed_stop_playback_during_barge_in_does_not_end_the_verification() -> None:
    flow = collecting()
    flow.handle(DtmfReceived(digit="1", at=5.0))
    out = flow.handle(CommandFailed(command=c.StopPlayback, error_id="ari_server_error"))
    assert out == [] and flow.state is V.COLLECT
    for i, key in enumerate("11111#"):
        out = flow.handle(DtmfReceived(digit=key, at=5.2 + i * 0.2))
    flow.handle(p.CheckCounted(locked=False, at=6.5))  # the service counted the check
    assert flow.result == "verified"


def test_a_channel_command_failing_on_a_live_channel_continues_in_the_dialplan() -> None:
    flow = collecting()
    out = flow.handle(CommandFailed(command=c.Play, error_id="ari_server_error"))
    assert [type(x) for x in out] == [c.ContinueDialplan, c.Finish]
    assert flow.done and flow.result == "failed"


def test_a_channel_that_is_gone_is_not_continued() -> None:
    flow = collecting()
    out = flow.handle(CommandFailed(command=c.Play, error_id="ari_not_found"))
    assert out == [c.Finish(result="hangup")]


def test_in_a_connect_call_the_verification_leaves_finishing_to_the_connect_flow() -> None:
    flow = collecting(continue_after=False)
    assert flow.handle(CommandFailed(command=c.Play, error_id="ari_server_error")) == []
    assert flow.done and flow.result == "failed"
