import pytest

from callsec_ari.core import commands as c
from callsec_ari.core.errors import FlowError
from callsec_ari.core.events import (
    CallerHungUp,
    CallStarted,
    CommandFailed,
    DtmfReceived,
    PlaybackFinished,
    TimerExpired,
)
from callsec_ari.probe.flow import ProbeFlow, ProbeState


def started() -> CallStarted:
    return CallStarted(flow="probe", caller_number="+4915112345678", at=0.0)


def test_probe_answers_prompts_and_arms_first_digit_timer() -> None:
    flow = ProbeFlow("call-1")
    cmds = flow.handle(started())
    assert isinstance(cmds[0], c.Answer)
    assert isinstance(cmds[1], c.Play)
    assert isinstance(cmds[2], c.StartTimer)
    assert flow.state is ProbeState.COLLECTING


def test_probe_sets_count_not_digits_and_continues_after_thanks() -> None:
    flow = ProbeFlow("call-1")
    flow.handle(started())
    out: list[c.Command] = []
    for i, d in enumerate("123456#"):
        out = flow.handle(DtmfReceived(digit=d, at=1 + i * 0.2))
    variables = next(x for x in out if isinstance(x, c.SetVariables))
    assert dict(variables.values) == {"CALLSEC_PROBE_RESULT": "complete", "CALLSEC_PROBE_COUNT": "6"}
    assert "123456" not in repr(out)
    final = flow.handle(PlaybackFinished(playback_id="call-1-thanks"))
    assert [type(x) for x in final] == [c.ContinueDialplan, c.Finish]
    assert flow.done


def test_probe_times_out_without_digits() -> None:
    flow = ProbeFlow("call-1")
    flow.handle(started())
    out = flow.handle(TimerExpired(name="digits"))
    variables = next(x for x in out if isinstance(x, c.SetVariables))
    assert dict(variables.values)["CALLSEC_PROBE_RESULT"] == "timeout"


def test_hangup_mid_entry_ends_flow_and_cancels_timer() -> None:
    flow = ProbeFlow("call-1")
    flow.handle(started())
    flow.handle(DtmfReceived(digit="1", at=1.0))
    out = flow.handle(CallerHungUp())
    assert c.CancelTimer(name="digits") in out
    assert flow.done and flow.result == "hangup"


def test_command_failure_ends_the_call() -> None:
    flow = ProbeFlow("call-1")
    flow.handle(started())
    out = flow.handle(CommandFailed(command=c.Play, error_id="ari_not_found"))
    assert flow.done and any(isinstance(x, c.Hangup) for x in out)


def test_unexpected_event_is_an_error_naming_the_call() -> None:
    flow = ProbeFlow("call-7")
    with pytest.raises(FlowError) as info:
        flow.handle(CallerHungUp.__mro__[1]())  # a bare Event before CallStarted
    assert "call-7" in str(info.value)
