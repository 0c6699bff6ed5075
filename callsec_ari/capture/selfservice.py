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
from callsec_ari.core.events import (
    CallerHungUp,
    CallStarted,
    CommandFailed,
    DtmfReceived,
    PlaybackFinished,
    Resynchronised,
    TimerExpired,
)
from callsec_ari.core.flow import ANY, TableFlow

FINAL = {"captured": "probe-thanks", "invalid": "capture-failed", "timeout": "capture-failed",
         "cancelled": "capture-failed"}


class S(Enum):
    NEW = auto()
    ENTERING = auto()
    STORING = auto()
    FAREWELL = auto()
    DONE = auto()


class SelfServiceCaptureFlow(TableFlow[S]):
    FINAL_STATES = frozenset({S.DONE})
    IGNORED_EVERYWHERE = (PlaybackFinished, TimerExpired, DtmfReceived, Resynchronised,
                          cp.CaptureStored)

    def __init__(self, call_id: str, entry: FieldEntry, customer_ref: str = "") -> None:
        super().__init__(call_id, S.NEW)
        self.entry = entry
        self.customer_ref = customer_ref
        self.result = ""
        self._final_id = f"{entry.capture_id}-final"

    def _start(self, event: CallStarted) -> list[c.Command]:
        self.state = S.ENTERING
        return [c.Answer(), *self.entry.start()]

    def _digit(self, event: DtmfReceived) -> list[c.Command]:
        return self._after(self.entry.digit(event.digit, event.at))

    def _timer(self, event: TimerExpired) -> list[c.Command]:
        return self._after(self.entry.timer(event.name))

    def _after(self, commands: list[c.Command]) -> list[c.Command]:
        if not self.entry.outcome:
            return commands
        if self.entry.outcome == "captured":
            self.state = S.STORING
            values = tuple(self.entry.values.items())
            self.entry.values = {}
            return [*commands, cp.StoreCapture(
                capture_id=self.entry.capture_id, customer_ref=self.customer_ref,
                values=values, masked=self.entry.masked_summary(),
                fields=tuple(f.value for f in self.entry.fields), requested_by="self-service")]
        return [*commands, *self._finish(self.entry.outcome, self.entry.reason)]

    def _stored(self, event: cp.CaptureStored) -> list[c.Command]:
        return self._finish("captured")

    def _finish(self, result: str, reason: str = "") -> list[c.Command]:
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
            self.state = S.DONE
            return [*commands, c.Finish(result=result)]
        self.state = S.FAREWELL
        return [*commands, c.Play(playback_id=self._final_id,
                                  media=(f"sound:callsec/{FINAL[result]}",),
                                  language=self.entry.o.language)]

    def _played(self, event: PlaybackFinished) -> list[c.Command]:
        if event.playback_id != self._final_id:
            return []
        self.state = S.DONE
        return [c.ContinueDialplan(), c.Finish(result=self.result)]

    def _hangup(self, event: CallerHungUp) -> list[c.Command]:
        if self.state is S.FAREWELL:
            self.state = S.DONE
            return [c.Finish(result=self.result)]
        return self._finish("hangup", "caller_left")

    def _failed(self, event: CommandFailed) -> list[c.Command]:
        if event.command == "StoreCapture" and self.state is S.STORING:
            return self._finish("cancelled", "store_failed")
        if event.command in ("RecordCapture", "Publish", "StopPlayback"):
            return []
        self.entry.wipe()
        self.state = S.DONE
        return [c.Finish(result="hangup" if "not_found" in event.error_id else "cancelled")]

    TABLE = {
        (S.NEW, CallStarted): _start,
        (S.ENTERING, DtmfReceived): _digit,
        (S.ENTERING, TimerExpired): _timer,
        (S.STORING, cp.CaptureStored): _stored,
        (S.FAREWELL, PlaybackFinished): _played,
        (ANY, CallerHungUp): _hangup,
        (ANY, CommandFailed): _failed,
    }
