"""Self-service capture (no agent): ``AGI(agi://127.0.0.1:4573/capture?fields=card_number,...)``.

answer -> enter each field (see :mod:`callsec_ari.capture.entry`) -> store through the sink ->
set ``CALLSEC_CAPTURE_RESULT`` (``captured | invalid | cancelled | timeout | hangup``) and
``CALLSEC_CAPTURE_REF`` (the opaque capture id) -> thank the caller -> back to the dialplan.
"""

from __future__ import annotations

from enum import Enum, auto

from callsec_ari.capture import protocol as cp
from callsec_ari.capture.entry import FieldEntry
from callsec_ari.core import commands as c
from callsec_ari.core.errors import CHANNEL_GONE
from callsec_ari.core.events import (
    CallerHungUp,
    CallStarted,
    CommandFailed,
    DtmfReceived,
    PlaybackFinished,
    Resynchronised,
    TimerExpired,
)
from callsec_ari.core.flow import ANY, Step, Table, TableFlow

FINAL = {"captured": "probe-thanks", "invalid": "capture-failed", "timeout": "capture-failed",
         "cancelled": "capture-failed"}


class S(Enum):
    NEW = auto()
    ENTERING = auto()
    STORING = auto()
    FAREWELL = auto()
    DONE = auto()


class SelfServiceCaptureFlow(TableFlow[S]):
    def __init__(self, call_id: str, entry: FieldEntry, customer_ref: str = "") -> None:
        super().__init__(call_id, S.NEW)
        self.entry = entry
        self.customer_ref = customer_ref
        self.result = ""
        self._final_id = f"{entry.capture_id}-final"

    def _start(self, event: CallStarted) -> Step[S]:
        return S.ENTERING, [c.Answer(), *self.entry.start()]

    def _digit(self, event: DtmfReceived) -> Step[S]:
        return self._after(self.entry.digit(event.digit, event.at))

    def _timer(self, event: TimerExpired) -> Step[S]:
        return self._after(self.entry.timer(event.name))

    def _after(self, commands: list[c.Command]) -> Step[S]:
        if not self.entry.outcome:
            return self.state, commands
        if self.entry.outcome == "captured":
            values = tuple(self.entry.values.items())
            self.entry.values = {}
            return S.STORING, [*commands, cp.StoreCapture(
                capture_id=self.entry.capture_id, customer_ref=self.customer_ref,
                values=values, masked=self.entry.masked_summary(),
                fields=tuple(f.value for f in self.entry.fields), requested_by="self-service")]
        to, end = self._finish(self.entry.outcome, self.entry.reason)
        return to, [*commands, *end]

    def _stored(self, event: cp.CaptureStored) -> Step[S]:
        return self._finish("captured")

    def _finish(self, result: str, reason: str = "") -> Step[S]:
        self.entry.wipe()
        self.result = result
        commands: list[c.Command] = [
            c.CancelTimer(name="capture-entry"),
            c.SetVariables(values=(("CALLSEC_CAPTURE_RESULT", result),
                                   ("CALLSEC_CAPTURE_REF", self.entry.capture_id))),
            c.Publish(topic="capture", payload=(("capture_id", self.entry.capture_id),
                                                ("stage", "finished"), ("result", result))),
        ]
        if result != "captured":
            commands.append(cp.RecordCapture(
                capture_id=self.entry.capture_id, customer_ref=self.customer_ref, result=result,
                fields=tuple(f.value for f in self.entry.fields),
                masked=self.entry.masked_summary(), requested_by="self-service", reason=reason))
        if result == "hangup":
            return S.DONE, [*commands, c.Finish(result=result)]
        return S.FAREWELL, [*commands, c.Play(playback_id=self._final_id,
                                  media=(f"sound:callsec/{FINAL[result]}",),
                                  language=self.entry.o.language)]

    def _played(self, event: PlaybackFinished) -> Step[S]:
        if event.playback_id != self._final_id:
            return self.state, []
        return S.DONE, [c.ContinueDialplan(), c.Finish(result=self.result)]

    def _hangup(self, event: CallerHungUp) -> Step[S]:
        if self.state is S.FAREWELL:
            return S.DONE, [c.Finish(result=self.result)]
        return self._finish("hangup", "caller_left")

    def _failed(self, event: CommandFailed) -> Step[S]:
        if event.command is cp.StoreCapture and self.state is S.STORING:
            return self._finish("cancelled", "store_failed")
        if event.command in (cp.RecordCapture, c.Publish, c.StopPlayback):
            return self.state, []
        self.entry.wipe()
        gone = event.error_id in CHANNEL_GONE
        return S.DONE, [c.Finish(result="hangup" if gone else "cancelled")]


TABLE = Table[SelfServiceCaptureFlow, S](S, final=(S.DONE,), ignored=(
    PlaybackFinished, TimerExpired, DtmfReceived, Resynchronised, cp.CaptureStored))
TABLE.on(S.NEW, CallStarted, SelfServiceCaptureFlow._start, S.ENTERING)
TABLE.on(S.ENTERING, DtmfReceived, SelfServiceCaptureFlow._digit, S.STORING, S.FAREWELL, S.DONE)
TABLE.on(S.ENTERING, TimerExpired, SelfServiceCaptureFlow._timer, S.STORING, S.FAREWELL, S.DONE)
TABLE.on(S.STORING, cp.CaptureStored, SelfServiceCaptureFlow._stored, S.FAREWELL)
TABLE.on(S.FAREWELL, PlaybackFinished, SelfServiceCaptureFlow._played, S.DONE)
TABLE.on(ANY, CallerHungUp, SelfServiceCaptureFlow._hangup, S.DONE)
TABLE.on(ANY, CommandFailed, SelfServiceCaptureFlow._failed, S.FAREWELL, S.DONE)
SelfServiceCaptureFlow.TABLE = TABLE
