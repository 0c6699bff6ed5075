"""A payment approval hosted by the connect flow (pure): it takes the capture slot, keys reach
it from the caller only, a capture request meanwhile is refused, failures end it as failed."""

from __future__ import annotations

from callsec_ari.approval import flow as af
from callsec_ari.capture import protocol as cp
from callsec_ari.config_check import load_settings
from callsec_ari.connect.flow import ConnectFlow, K
from callsec_ari.core import commands as c
from callsec_ari.core.events import ApprovalChecked, CallStarted, CommandFailed, DtmfReceived

AP = "AP-0a1b2c3d4e5f6a7b"


def connected() -> ConnectFlow:
    from callsec_ari.flows import FlowRegistry

    flow = FlowRegistry(load_settings(None, env={})).connect(
        "call-1", CallStarted(flow="connect", args=("PJSIP/agent100",)))
    assert isinstance(flow, ConnectFlow)
    flow.adopt(result="verified", customer_ref="C-ABCDEFGH", language="en")
    assert flow.state is K.CONNECTED
    return flow


def approving() -> ConnectFlow:
    flow = connected()
    out = flow.handle(af.ApprovalRequested(approval_id=AP, requested_by="anna", at=0.0))
    assert any(isinstance(x, af.MuteForApproval) for x in out)
    flow.handle(cp.RecordingMuted(mute=True, at=0.1))
    assert isinstance(flow.capture, af.ApprovalSteering) and flow.capture.stage == "entering"
    return flow


def test_caller_keys_reach_the_approval_and_the_check_follows() -> None:
    flow = approving()
    out: list[c.Command] = []
    for i, key in enumerate("123456"):
        out += flow.handle(DtmfReceived(digit=key, leg="caller", at=1.0 + i))
    assert any(isinstance(x, af.CheckApprovalCode) for x in out)
    done = flow.handle(ApprovalChecked(approval_id=AP, result="ok", at=9.0))
    finish = next(x for x in done if isinstance(x, af.FinishApproval))
    assert finish.result == "approved" and flow.capture is not None
    assert flow.capture.stage == "done"


def test_agent_keys_start_no_capture_while_approving_and_requests_are_refused() -> None:
    flow = approving()
    for i, key in enumerate("*1"):
        assert flow.handle(DtmfReceived(digit=key, leg="agent", at=1.0 + i)) == []
    out = flow.handle(cp.CaptureRequested(capture_id="CP-1", fields=("cvv",), at=2.0))
    assert ("reason", "busy") in next(x for x in out if isinstance(x, c.Publish)).payload
    again = flow.handle(af.ApprovalRequested(approval_id="AP-second", at=3.0))
    assert next(x for x in again if isinstance(x, af.FinishApproval)).reason == "busy"


def test_failed_mute_ends_the_approval_without_moving_the_caller() -> None:
    flow = connected()
    flow.handle(af.ApprovalRequested(approval_id=AP, at=0.0))
    out = flow.handle(CommandFailed(command=af.MuteForApproval, error_id="recording_mute_failed",
                                    at=0.1))
    assert next(x for x in out if isinstance(x, af.FinishApproval)).result == "failed"
    assert not any(isinstance(x, c.RemoveFromBridge) for x in out)


def test_cancel_gives_the_caller_back_as_failed() -> None:
    flow = approving()
    out = flow.handle(cp.CaptureCancelled(capture_id=AP, by="api", at=1.0))
    finish = next(x for x in out if isinstance(x, af.FinishApproval))
    assert (finish.result, finish.reason) == ("failed", "cancelled_by_api")
