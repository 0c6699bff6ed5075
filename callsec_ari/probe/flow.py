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
from callsec_ari.core.flow import ANY, Step, Table, TableFlow

TIMER = "digits"


class ProbeState(Enum):
    NEW = auto()
    COLLECTING = auto()
    FAREWELL = auto()
    DONE = auto()


class ProbeFlow(TableFlow[ProbeState]):
    def __init__(self, call_id: str, spec: CollectorSpec | None = None) -> None:
        super().__init__(call_id, ProbeState.NEW)
        self.collector = DigitCollector(spec or CollectorSpec(max_digits=32))
        self.language = "en"
        self.result = ""

    def _start(self, event: CallStarted) -> Step[ProbeState]:
        self.language = event.language
        return ProbeState.COLLECTING, [
            c.Answer(),
            c.Play(playback_id=f"{self.call_id}-prompt",
                   media=("sound:callsec/probe-enter-digits",), language=self.language),
            c.StartTimer(name=TIMER, seconds=self.collector.timeout),
        ]

    def _digit(self, event: DtmfReceived) -> Step[ProbeState]:
        if event.leg != "caller":
            return self.state, []
        return self._outcome(self.collector.feed(event.digit, event.at))

    def _timer(self, event: TimerExpired) -> Step[ProbeState]:
        if event.name != TIMER:
            return self.state, []
        return self._outcome(self.collector.expire())

    def _outcome(self, result: Result) -> Step[ProbeState]:
        if result.outcome in (Outcome.PROGRESS, Outcome.RESTARTED):
            return self.state, [c.StartTimer(name=TIMER, seconds=self.collector.timeout)]
        if result.outcome is Outcome.COMPLETE:
            return self._farewell("complete", result.count)
        if result.outcome is Outcome.TIMEOUT:
            return self._farewell("timeout", result.count)
        return self.state, []

    def _farewell(self, result: str, count: int) -> Step[ProbeState]:
        self.collector.wipe()
        self.result = result
        return ProbeState.FAREWELL, [
            c.CancelTimer(name=TIMER),
            c.SetVariables(values=(("CALLSEC_PROBE_RESULT", result),
                                   ("CALLSEC_PROBE_COUNT", str(count)))),
            c.Play(playback_id=f"{self.call_id}-thanks", media=("sound:callsec/probe-thanks",),
                   language=self.language),
        ]

    def _played(self, event: PlaybackFinished) -> Step[ProbeState]:
        if event.playback_id != f"{self.call_id}-thanks":
            return self.state, []
        return ProbeState.DONE, [c.ContinueDialplan(), c.Finish(result=self.result)]

    def _hangup(self, event: CallerHungUp) -> Step[ProbeState]:
        self.collector.wipe()
        self.result = "hangup"
        return ProbeState.DONE, [c.CancelTimer(name=TIMER), c.Finish(result="hangup")]

    def _failed(self, event: CommandFailed) -> Step[ProbeState]:
        self.collector.wipe()
        self.result = "error"
        return ProbeState.DONE, [c.CancelTimer(name=TIMER), c.Hangup(), c.Finish(result="error")]


P = ProbeState
TABLE = Table[ProbeFlow, ProbeState](
    ProbeState, final=(P.DONE,), ignored=(PlaybackFinished, TimerExpired, DtmfReceived))
TABLE.on(P.NEW, CallStarted, ProbeFlow._start, P.COLLECTING)
TABLE.on(P.COLLECTING, DtmfReceived, ProbeFlow._digit, P.FAREWELL)
TABLE.on(P.COLLECTING, TimerExpired, ProbeFlow._timer, P.FAREWELL)
TABLE.on(P.FAREWELL, PlaybackFinished, ProbeFlow._played, P.DONE)
TABLE.on(ANY, CallerHungUp, ProbeFlow._hangup, P.DONE)
TABLE.on(ANY, CommandFailed, ProbeFlow._failed, P.DONE)
ProbeFlow.TABLE = TABLE
