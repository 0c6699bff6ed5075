"""The digit probe: the foundation's proof of the pipeline.

``Stasis(callsec,probe)``: answer, play a prompt, collect digits until ``#`` (inter-digit and
first-digit timeouts), set ``CALLSEC_PROBE_RESULT`` (``complete | timeout | hangup``) and
``CALLSEC_PROBE_COUNT`` (how many digits, never which), thank the caller and continue in the
dialplan.
"""

from __future__ import annotations

from enum import Enum, auto

from callsec_ari.core import commands as c
from callsec_ari.core.digits import CollectorSpec, DigitCollector, Outcome, Result
from callsec_ari.core.events import (
    CallerHungUp,
    CallStarted,
    CommandFailed,
    DtmfReceived,
    PlaybackFinished,
    TimerExpired,
)
from callsec_ari.core.flow import ANY, TableFlow

TIMER = "digits"


class ProbeState(Enum):
    NEW = auto()
    COLLECTING = auto()
    FAREWELL = auto()
    DONE = auto()


class ProbeFlow(TableFlow[ProbeState]):
    FINAL_STATES = frozenset({ProbeState.DONE})
    IGNORED_EVERYWHERE = (PlaybackFinished, TimerExpired, DtmfReceived)

    def __init__(self, call_id: str, spec: CollectorSpec | None = None) -> None:
        super().__init__(call_id, ProbeState.NEW)
        self.collector = DigitCollector(spec or CollectorSpec(max_digits=32))
        self.language = "en"
        self.result = ""

    def _start(self, event: CallStarted) -> list[c.Command]:
        self.language = event.language
        self.state = ProbeState.COLLECTING
        return [
            c.Answer(),
            c.Play(playback_id=f"{self.call_id}-prompt",
                   media=("sound:callsec/probe-enter-digits",), language=self.language),
            c.StartTimer(name=TIMER, seconds=self.collector.timeout),
        ]

    def _digit(self, event: DtmfReceived) -> list[c.Command]:
        if event.leg != "caller":
            return []
        return self._outcome(self.collector.feed(event.digit, event.at))

    def _timer(self, event: TimerExpired) -> list[c.Command]:
        if event.name != TIMER:
            return []
        return self._outcome(self.collector.expire())

    def _outcome(self, result: Result) -> list[c.Command]:
        if result.outcome in (Outcome.PROGRESS, Outcome.RESTARTED):
            return [c.StartTimer(name=TIMER, seconds=self.collector.timeout)]
        if result.outcome is Outcome.COMPLETE:
            return self._farewell("complete", result.count)
        if result.outcome is Outcome.TIMEOUT:
            return self._farewell("timeout", result.count)
        return []

    def _farewell(self, result: str, count: int) -> list[c.Command]:
        self.collector.wipe()
        self.result = result
        self.state = ProbeState.FAREWELL
        return [
            c.CancelTimer(name=TIMER),
            c.SetVariables(values=(("CALLSEC_PROBE_RESULT", result),
                                   ("CALLSEC_PROBE_COUNT", str(count)))),
            c.Play(playback_id=f"{self.call_id}-thanks", media=("sound:callsec/probe-thanks",),
                   language=self.language),
        ]

    def _played(self, event: PlaybackFinished) -> list[c.Command]:
        if event.playback_id != f"{self.call_id}-thanks":
            return []
        self.state = ProbeState.DONE
        return [c.ContinueDialplan(), c.Finish(result=self.result)]

    def _hangup(self, event: CallerHungUp) -> list[c.Command]:
        self.collector.wipe()
        self.result = "hangup"
        self.state = ProbeState.DONE
        return [c.CancelTimer(name=TIMER), c.Finish(result="hangup")]

    def _failed(self, event: CommandFailed) -> list[c.Command]:
        self.collector.wipe()
        self.result = "error"
        self.state = ProbeState.DONE
        return [c.CancelTimer(name=TIMER), c.Hangup(), c.Finish(result="error")]

    TABLE = {
        (ProbeState.NEW, CallStarted): _start,
        (ProbeState.COLLECTING, DtmfReceived): _digit,
        (ProbeState.COLLECTING, TimerExpired): _timer,
        (ProbeState.FAREWELL, PlaybackFinished): _played,
        (ANY, CallerHungUp): _hangup,
        (ANY, CommandFailed): _failed,
    }
