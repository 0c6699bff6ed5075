"""The approval flow's transition table (pure): muting -> entering <-> checking -> done."""

from __future__ import annotations

from callsec_ari.approval import flow as af
from callsec_ari.capture import protocol as cp
from callsec_ari.capture.fields import ValidationContext
from callsec_ari.capture.steering import OVERALL, SteeringOptions
from callsec_ari.core import commands as c
from callsec_ari.core.events import ApprovalChecked, DtmfReceived, TimerExpired

AP = "AP-0a1b2c3d4e5f6a7b"


def steering(max_attempts: int = 2) -> af.ApprovalSteering:
    s = af.ApprovalSteering(
        af.ApprovalRequested(approval_id=AP, requested_by="anna", at=0.0),
        ValidationContext(year=2026, month=12),
        SteeringOptions(agent_bridge="callsec-call-X", capture_bridge="callsec-capture-X",
                        customer_ref="C-ABCDEFGH"),
        af.ApprovalOptions(code_digits=4, max_attempts=max_attempts))
    return s


def entering(max_attempts: int = 2) -> af.ApprovalSteering:
    s = steering(max_attempts)
    s.start()
    s.muted()
    assert s.stage == "entering"
    return s


def typed(s: af.ApprovalSteering, keys: str) -> list[c.Command]:
    out: list[c.Command] = []
    for i, key in enumerate(keys):
        out += s.handle(DtmfReceived(digit=key, leg="caller", at=1.0 + i))
    return out


def finish(commands: list[c.Command]) -> af.FinishApproval:
    return next(x for x in commands if isinstance(x, af.FinishApproval))


def test_start_mutes_first_and_moves_the_caller_only_once_muted() -> None:
    s = steering()
    start = s.start()
    assert any(isinstance(x, af.MuteForApproval) and x.mute for x in start)
    assert not any(isinstance(x, c.RemoveFromBridge) for x in start)
    assert s.handle(DtmfReceived(digit="1", leg="caller", at=0.5)) == []  # not entering yet
    moved = s.handle(cp.RecordingMuted(mute=True, at=1.0))
    add = next(x for x in moved if isinstance(x, c.AddToBridge))
    assert add.bridge_id == "callsec-capture-X" and add.absorb_dtmf
    assert any(isinstance(x, c.Play) and x.leg == "agent" for x in moved)  # hold loop


def test_a_full_code_is_checked_and_ok_approves() -> None:
    s = entering()
    out = typed(s, "1234")
    check = next(x for x in out if isinstance(x, af.CheckApprovalCode))
    assert s.stage == "checking" and "1234" not in repr(check)
    back = s.handle(ApprovalChecked(approval_id=AP, result="ok", at=5.0))
    assert finish(back).result == "approved" and s.stage == "done"
    assert any(isinstance(x, af.MuteForApproval) and not x.mute for x in back)
    assert any(isinstance(x, c.AddToBridge) and x.bridge_id == "callsec-call-X" for x in back)


def test_wrong_code_reprompts_then_fails_after_max_attempts() -> None:
    s = entering(max_attempts=2)
    typed(s, "1111")
    again = s.handle(ApprovalChecked(approval_id=AP, result="wrong", at=5.0))
    assert s.stage == "entering" and not any(isinstance(x, af.FinishApproval) for x in again)
    typed(s, "2222")
    done = s.handle(ApprovalChecked(approval_id=AP, result="wrong", at=9.0))
    assert (finish(done).result, finish(done).reason) == ("failed", "wrong_code")


def test_expired_replayed_and_locked_codes_fail_at_once() -> None:
    for result, reason in (("expired", "expired"), ("used", "replayed"),
                           ("locked", "locked"), ("terms_changed", "terms_changed")):
        s = entering(max_attempts=3)
        typed(s, "1234")
        out = s.handle(ApprovalChecked(approval_id=AP, result=result, at=5.0))
        assert (finish(out).result, finish(out).reason) == ("failed", reason)


def test_hash_without_a_code_declines() -> None:
    s = entering()
    out = typed(s, "#")
    assert finish(out).result == "declined"


def test_agent_digits_are_ignored_and_a_check_for_another_approval_too() -> None:
    s = entering()
    assert s.handle(DtmfReceived(digit="1", leg="agent", at=1.0)) == []
    typed(s, "1234")
    assert s.handle(ApprovalChecked(approval_id="AP-other", result="ok", at=2.0)) == []
    assert s.stage == "checking"


def test_overall_timeout_and_cancel_end_as_failed() -> None:
    s = entering()
    out = s.handle(TimerExpired(name=OVERALL, at=100.0))
    assert (finish(out).result, finish(out).reason) == ("failed", "timeout")
    s = entering()
    out = s.give_back("cancelled", "cancelled_by_api")
    assert (finish(out).result, finish(out).reason) == ("failed", "cancelled_by_api")


def test_events_the_table_does_not_list_change_nothing() -> None:
    s = steering()
    assert s.handle(ApprovalChecked(approval_id=AP, result="ok", at=1.0)) == []
    assert s.stage == "muting"
    assert ("checking", ApprovalChecked) in af.ApprovalSteering.TABLE


def test_published_events_carry_no_digits() -> None:
    s = steering()
    out = [*s.start(), *s.muted(), *typed(s, "1234"),
           *s.handle(ApprovalChecked(approval_id=AP, result="ok", at=5.0))]
    for cmd in out:
        if isinstance(cmd, c.Publish):
            assert cmd.topic == "approval"
            assert "1234" not in repr(cmd.payload)
