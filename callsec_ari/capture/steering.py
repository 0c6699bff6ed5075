"""Steering one agent-requested capture inside a ``connect`` call (pure).

mute the caller's recordings -> move the caller out of the agent's bridge into a capture
bridge of its own (named ``callsec-capture-<call id>`` so a restarted callsec finds it) -> the
agent hears a "customer is entering details" loop, the caller the field prompts -> store the
values (vault or payment gateway) -> the caller returns to the agent's bridge, both hear a
short tone, recordings are unmuted. If muting fails the caller never moves and the agent is told.

:class:`CaptureSteering` is the route the ``connect`` flow hosts in its capture slot
(``connect/captures.py``) through :meth:`~CaptureSteering.handle`, :meth:`~CaptureSteering.cancel`
and :meth:`~CaptureSteering.abandon`; talk-through (``capture/talkthrough.py``) and payment
approvals (``approval/flow.py``) are the other routes, one ending each.
"""

from __future__ import annotations

from dataclasses import dataclass

from callsec_ari.capture import protocol as cp
from callsec_ari.capture.entry import TIMER as ENTRY_TIMER
from callsec_ari.capture.entry import FieldEntry
from callsec_ari.core import commands as c
from callsec_ari.core.events import (
    CommandFailed,
    DtmfReceived,
    Event,
    PlaybackFinished,
    TimerExpired,
)
from callsec_ari.core.flow import CaptureHost

OVERALL = "capture-overall"
LOOP = "sound:callsec/customer-entering-details"
RETURN_PROMPTS = {"captured": "capture-complete", "cancelled": "capture-cancelled",
                  "invalid": "capture-cancelled", "timeout": "capture-timeout"}


@dataclass(frozen=True, kw_only=True)
class SteeringOptions:
    agent_bridge: str
    capture_bridge: str
    customer_ref: str
    capture_timeout: float = 180.0
    language: str = "en"


class CaptureSteering:
    """``stage``: ``muting`` -> ``entering`` -> ``storing`` -> ``done``."""

    #: Talk-through media legs a reconnect must hang up after a lost give-back.
    media_legs: tuple[str, ...] = ()
    #: The route that took over (a talk-through capture that fell back to bridge mode).
    successor: CaptureSteering | None = None

    def __init__(self, request: cp.CaptureRequested, entry: FieldEntry,
                 options: SteeringOptions) -> None:
        self.request = request
        self.entry = entry
        self.o = options
        self.stage = "muting"
        self.result = ""
        #: ``sealed`` | ``token`` | ``vault`` (set by the flow from ``CaptureStored``): goes
        #: out with ``finished``.
        self.stored_as = ""
        self._loop_seq = 0
        self.loop_id = ""

    @property
    def capture_id(self) -> str:
        return self.request.capture_id

    def _publish(self, stage: str, **extra: str | int | bool) -> c.Publish:
        payload: dict[str, str | int | bool] = {"capture_id": self.capture_id, "stage": stage}
        payload.update(extra)
        return c.Publish(topic="capture", payload=tuple(payload.items()))

    def start(self) -> list[c.Command]:
        return [self._publish("requested", fields=",".join(self.request.fields),
                              requested_by=self.request.requested_by),
                cp.MuteRecording(leg="caller", mute=True)]

    def mute_failed(self, error_id: str) -> list[c.Command]:
        """Muting failed: the capture does not start; the caller stays with the agent."""
        self.stage, self.result = "done", "cancelled"
        return [self._publish("failed", reason="recording_mute_failed", error_id=error_id),
                self._record("cancelled", "recording_mute_failed")]

    @property
    def done(self) -> bool:
        return self.stage == "done"

    def handle(self, event: Event) -> list[c.Command]:
        """An event of the connect call while this route holds its capture slot."""
        if isinstance(event, cp.RecordingMuted):
            return self.muted() if event.mute and self.stage == "muting" else []
        if isinstance(event, DtmfReceived):
            return self._key(event) if self.stage == "entering" else []
        if isinstance(event, TimerExpired):
            return self.timer(event.name)
        if isinstance(event, PlaybackFinished):
            return self.played(event.playback_id)
        if isinstance(event, cp.FieldControl):
            return self.control(event)
        if isinstance(event, cp.CaptureStored):
            self.stored_as = event.stored_as
            return self.stored()
        if isinstance(event, CommandFailed):
            return self.failed(event)
        return []

    def cancel(self, reason: str) -> list[c.Command]:
        """Cancelled (agent, API, reconnect): before the caller moved nothing is given back."""
        if self.stage == "muting":
            return self.abandon("cancelled", reason)
        return self.give_back("cancelled", reason)

    def failed(self, event: CommandFailed) -> list[c.Command]:
        if event.command is cp.MuteRecording and self.stage == "muting":
            return self.mute_failed(event.error_id)
        if event.command is cp.StoreCapture:
            return self.give_back("cancelled", "store_failed")
        if issubclass(event.command, (c.CreateBridge, c.AddToBridge, c.RemoveFromBridge)):
            return self.give_back("cancelled", "bridge_failed")
        return []

    def _key(self, event: DtmfReceived) -> list[c.Command]:
        return self.digit(event.digit, event.at) if event.leg == "caller" else []

    def steer_in(self) -> list[c.Command]:
        """The caller out of the agent's bridge into the capture bridge; the agent's loop."""
        self.stage = "entering"
        return [
            c.RemoveFromBridge(bridge_id=self.o.agent_bridge, leg="caller"),
            c.CreateBridge(bridge_id=self.o.capture_bridge, name=self.o.capture_bridge),
            c.AddToBridge(bridge_id=self.o.capture_bridge, leg="caller", absorb_dtmf=True),
            self._agent_loop(),
            c.StartTimer(name=OVERALL, seconds=self.o.capture_timeout),
        ]

    def muted(self) -> list[c.Command]:
        return [*self.steer_in(), self._publish("started"),
                *self.entry.start(again=bool(self.request.reopen_fields))]

    def _agent_loop(self) -> c.Play:
        self._loop_seq += 1
        self.loop_id = f"{self.capture_id}-loop{self._loop_seq}"
        return c.Play(playback_id=self.loop_id, media=(LOOP,), language=self.o.language,
                      leg="agent")

    def played(self, playback_id: str) -> list[c.Command]:
        """The agent's loop ended: play it again while the caller is still typing."""
        if self.stage == "entering" and playback_id == self.loop_id:
            return [self._agent_loop()]
        return []

    def digit(self, key: str, at: float) -> list[c.Command]:
        return self._after_entry(self.entry.digit(key, at))

    def control(self, event: cp.FieldControl) -> list[c.Command]:
        """Re-request, cancel or skip one field while the caller is entering."""
        if self.stage != "entering":
            return []
        commands = self.entry.control(event.field, event.action)
        if not commands:
            return [self._publish("field_control_refused", field=event.field,
                                  action=event.action)]
        return self._after_entry(commands)

    def timer(self, name: str) -> list[c.Command]:
        if name == OVERALL:
            self.entry.outcome, self.entry.reason = "timeout", "capture_timeout"
            return self._after_entry([])
        return self._after_entry(self.entry.timer(name))

    def _after_entry(self, commands: list[c.Command]) -> list[c.Command]:
        if not self.entry.outcome:
            return commands
        if self.entry.outcome == "captured":
            self.stage = "storing"
            values = tuple(self.entry.values.items())
            self.entry.values = {}  # the holders now belong to the StoreCapture command
            reopened = bool(self.request.reopen_fields)
            return [*commands, c.CancelTimer(name=OVERALL), self._publish("storing"),
                    cp.StoreCapture(capture_id=self.capture_id, customer_ref=self.o.customer_ref,
                                    values=values, masked=self.summary(),
                                    fields=self.request.reopen_fields or self.request.fields,
                                    requested_by=self.request.requested_by,
                                    replaces=self.request.fields if reopened else ())]
        return [*commands, *self.give_back(self.entry.outcome, self.entry.reason)]

    def stored(self) -> list[c.Command]:
        return self.give_back("captured")

    def summary(self) -> tuple[tuple[str, tuple[tuple[str, object], ...]], ...]:
        """The capture's masked summary; a re-opened capture's is the stored one with the
        re-entered fields replaced."""
        if not self.request.reopen_fields:
            return self.entry.masked_summary()
        merged = {**dict(self.request.reopens), **dict(self.entry.masked_summary())}
        return tuple((f, merged[f]) for f in self.request.reopen_fields if f in merged)

    def give_back(self, result: str, reason: str = "") -> list[c.Command]:
        """End the capture and return the caller to the agent's bridge. A re-opened capture
        that ends without new values keeps what was stored: still ``captured``."""
        self.entry.wipe()
        if self.request.reopen_fields and result != "captured":
            result, reason = "captured", f"rerequest_{result}"
            self.entry.masked.clear()
        self.stage, self.result = "done", result
        back = f"sound:callsec/{RETURN_PROMPTS.get(result, 'capture-cancelled')}"
        commands: list[c.Command] = [
            c.CancelTimer(name=OVERALL), c.CancelTimer(name=ENTRY_TIMER),
            *self._return_caller(), cp.MuteRecording(leg="caller", mute=False),
            *self._back_prompts(back),
            self._publish("finished", result=result, **({"reason": reason} if reason else {}),
                          **self._finished_extra(), **self._masked_flat()),
        ]
        if result != "captured":
            commands.append(self._record(result, reason))
        return commands

    # -- what the routes' endings differ in ------------------------------------------------
    def _return_caller(self) -> list[c.Command]:
        return [c.StopPlayback(playback_id=self.loop_id),
                *[c.StopPlayback(playback_id=pid) for pid in self.entry.prompts],
                c.RemoveFromBridge(bridge_id=self.o.capture_bridge, leg="caller"),
                c.AddToBridge(bridge_id=self.o.agent_bridge, leg="caller", absorb_dtmf=True),
                *self._tear_down()]

    def _tear_down(self) -> list[c.Command]:
        return [c.DestroyBridge(bridge_id=self.o.capture_bridge)]

    def _back_prompts(self, back: str) -> list[c.Command]:
        return [c.Play(playback_id=f"{self.capture_id}-back", language=self.o.language,
                       media=(back, "sound:beep")),
                c.Play(playback_id=f"{self.capture_id}-beep", media=("sound:beep",), leg="agent")]

    def _finished_extra(self) -> dict[str, str | int | bool]:
        return {"stored_as": self.stored_as} if self.stored_as else {}

    def reopen(self, event: cp.FieldControl) -> cp.CaptureRequested | None:
        """A re-request of a field of this just-finished, stored capture: the request that
        re-opens it for that field (None when it cannot be re-opened)."""
        fields = self.request.reopen_fields or self.request.fields
        if self.stage != "done" or self.result != "captured" or event.action != "rerequest" \
                or event.field not in fields:
            return None
        return cp.CaptureRequested(capture_id=self.capture_id, fields=(event.field,),
                                   requested_by=event.by, mode="bridge", reopen_fields=fields,
                                   reopens=self.summary(), at=event.at)

    def abandon(self, result: str, reason: str) -> list[c.Command]:
        """A leg left mid-capture: digits discarded, capture recorded, bridge torn down (a
        re-opened capture keeps its stored record)."""
        self.entry.wipe()
        self.stage, self.result = "done", result
        record = [] if self.request.reopen_fields else [self._record(result, reason)]
        return [c.CancelTimer(name=OVERALL), c.CancelTimer(name=ENTRY_TIMER), *self._tear_down(),
                cp.MuteRecording(leg="caller", mute=False),
                self._publish("finished", result=result, reason=reason), *record]

    def _record(self, result: str, reason: str) -> cp.RecordCapture:
        return cp.RecordCapture(capture_id=self.capture_id, customer_ref=self.o.customer_ref,
                                result=result, fields=self.request.fields,
                                masked=self.entry.masked_summary(),
                                requested_by=self.request.requested_by, reason=reason)

    def _masked_flat(self) -> dict[str, str | int | bool]:
        """The masked summary, flat (SSE payloads carry scalars): brand, last 4, and the
        fields by outcome (``fields_valid``, ``fields_cancelled``, ``fields_skipped``,
        ``fields_missing``: comma lists in request order)."""
        flat: dict[str, str | int | bool] = {}
        summary = {kind: dict(pairs) for kind, pairs in self.summary()}
        card = summary.get("card_number", {})
        for key in ("brand", "last4"):
            if isinstance(card.get(key), str) and card[key]:
                flat[key] = str(card[key])
        groups: dict[str, list[str]] = {"valid": [], "cancelled": [], "skipped": [],
                                        "missing": []}
        for kind in self.request.reopen_fields or self.request.fields:
            field = summary.get(kind, {})
            how = "valid" if field.get("valid") is True else field.get("status")
            groups[str(how or "missing")].append(kind)
        flat.update({f"fields_{k}": ",".join(v) for k, v in groups.items() if v})
        return flat


def hosted(flow: object) -> tuple[bool, CaptureSteering | None]:
    """Whether ``flow`` hosts captures now (``core.flow.CaptureHost``: a connected call), and
    its running or last route."""
    if not isinstance(flow, CaptureHost):
        return False, None
    route = flow.capture
    return flow.hosting, route if isinstance(route, CaptureSteering) else None
