"""``Stasis(callsec,connect,<dial string>)``: verification per policy, then callsec dials the
agent and owns the bridge for the rest of the call (so captures are possible).

An unverified caller is never connected unless the policy says ``connect_unverified``; such a
caller goes back to the dialplan with ``CALLSEC_RESULT`` set, so the dialplan can route them.
Both legs join the bridge with ``absorb_dtmf=True``: keys the caller presses never reach the
agent's phone as DTMF, and the agent's feature codes never reach the caller.

A call a previous callsec process connected is taken over with :meth:`ConnectFlow.adopt` and a
first :class:`Recovered` event (``callsec_ari/connect/recovery.py`` finds it by its bridges): the
caller comes back from an orphaned capture, or hears why the agent is gone. After a websocket
reconnect (``Resynchronised``) a running capture is cancelled and the caller given back: the
keys pressed while callsec could not hear them are lost, so the entry cannot be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from callsec_ari.approval import flow as af
from callsec_ari.capture import protocol as cp
from callsec_ari.capture.steering import CaptureSteering
from callsec_ari.capture.talkthrough import MEDIA_LEGS
from callsec_ari.connect.captures import AGENT, CaptureOptions, CaptureSlot
from callsec_ari.connect.recovery import Recovered, call_bridge
from callsec_ari.core import commands as c
from callsec_ari.core.events import (
    ApprovalChecked,
    CallerHungUp,
    CommandFailed,
    DtmfReceived,
    Event,
    ExternalMediaReady,
    LegAnswered,
    LegGone,
    PlaybackFinished,
    Resynchronised,
    TimerExpired,
)
from callsec_ari.core.flow import ANY, Step, Table, TableFlow
from callsec_ari.verification.flow import V, VerificationFlow
from callsec_ari.verification.protocol import ConfirmationAnswered, CustomerView

DIAL_TIMER = "dial"


@dataclass(frozen=True, kw_only=True)
class ConnectOptions:
    dial_string: str
    connect_unverified: bool = False
    #: ``continue`` (back to the dialplan) or ``hangup`` when the agent leaves.
    on_agent_hangup: str = "continue"
    dial_timeout: int = 30
    moh_class: str = ""
    #: Captures in this call; None: captures are not offered.
    captures: CaptureOptions | None = None
    #: Payment approvals (``approval/flow.py``); they need ``captures`` too.
    approvals: af.ApprovalOptions | None = None


class K(Enum):
    VERIFYING = auto()
    DIALLING = auto()
    CONNECTED = auto()
    ENDING = auto()
    DONE = auto()


class ConnectFlow(TableFlow[K]):
    def __init__(self, call_id: str, verification: VerificationFlow,
                 options: ConnectOptions) -> None:
        super().__init__(call_id, K.VERIFYING)
        self.verification = verification
        self.o = options
        self.bridge_id = call_bridge(call_id)
        self.result = ""
        self._ending_prompt = f"{call_id}-k-unavailable"
        self.slot = CaptureSlot(call_id, self.bridge_id, options.captures, options.approvals)

    def adopt(self, *, result: str, customer_ref: str, language: str) -> None:
        """Take over a call connected by a previous callsec process: straight to CONNECTED
        (its verification ended long ago: ``result``, from ``CALLSEC_RESULT``)."""
        self.result = result
        self.verification.result = result
        self.verification.language = language or self.verification.language
        if customer_ref:
            self.verification.customer = CustomerView(ref=customer_ref)
        self.verification.resume(V.DONE)
        self.resume(K.CONNECTED)

    @property
    def hosting(self) -> bool:
        """Captures may start (``core.flow.CaptureHost``): the call is connected."""
        return self.state is K.CONNECTED

    @property
    def capture(self) -> CaptureSteering | None:
        """The capture slot's route: running, or the one that ended last."""
        return self.slot.route

    @property
    def _who(self) -> tuple[str, str]:
        """Whom a capture files under (an unverified caller: no one) and their language."""
        return self.verification.verified_customer, self.verification.language

    def _verifying(self, event: Event) -> Step[K]:
        commands = self.verification.handle(event)
        if not self.verification.done:
            return K.VERIFYING, commands
        to, more = self._verified()
        return to, commands + more

    def _not_connected(self, event: cp.CaptureRequested) -> Step[K]:
        """The API checked CONNECTED, then awaited its audit entry: the call moved on."""
        return self.state, [c.Publish(topic="capture", payload=(
            ("capture_id", event.capture_id), ("stage", "rejected"),
            ("reason", "not_connected")))]

    def _verified(self) -> Step[K]:
        self.result = self.verification.result
        if self.result == "hangup":
            return K.DONE, [c.Finish(result="hangup")]
        # "this is not me": the caller is never connected, whatever connect_unverified says
        if self.result not in ("verified", "skipped") and (
                not self.o.connect_unverified or self.result == "denied"):
            return K.DONE, [c.ContinueDialplan(), c.Finish(result=self.result)]
        ref = self.verification.verified_customer  # an unverified caller: "callsec"
        return K.DIALLING, [
            c.Publish(topic="call", payload=(("stage", "dialling"),)),
            c.StartMoh(leg="caller", moh_class=self.o.moh_class),
            c.CreateBridge(bridge_id=self.bridge_id, name=self.bridge_id),
            c.DialLeg(leg=AGENT, endpoint=self.o.dial_string, caller_id=ref or "callsec",
                      timeout=self.o.dial_timeout),
            c.StartTimer(name=DIAL_TIMER, seconds=self.o.dial_timeout + 5),
        ]

    def _answered(self, event: LegAnswered) -> Step[K]:
        if event.leg != AGENT:
            return self.state, []
        return K.CONNECTED, [
            c.CancelTimer(name=DIAL_TIMER),
            c.StopMoh(leg="caller"),
            c.AddToBridge(bridge_id=self.bridge_id, leg="caller", absorb_dtmf=True),
            c.AddToBridge(bridge_id=self.bridge_id, leg=AGENT, absorb_dtmf=True),
            c.Publish(topic="call", payload=(("stage", "connected"),)),
        ]

    def _not_reached(self, event: Event) -> Step[K]:
        if isinstance(event, LegGone) and event.leg != AGENT:
            return self.state, []
        if isinstance(event, TimerExpired) and event.name != DIAL_TIMER:
            return self.state, []
        return K.ENDING, [
            c.CancelTimer(name=DIAL_TIMER), c.StopMoh(leg="caller"), c.HangupLeg(leg=AGENT),
            c.DestroyBridge(bridge_id=self.bridge_id),
            c.SetVariables(values=(("CALLSEC_AGENT", "unavailable"),)),
            c.Publish(topic="call", payload=(("stage", "agent_unavailable"),)),
            c.Play(playback_id=self._ending_prompt, media=("sound:callsec/agent-unavailable",),
                   language=self.verification.language),
        ]

    def _ending_played(self, event: PlaybackFinished) -> Step[K]:
        if event.playback_id != self._ending_prompt:
            return self.state, []
        agent_left = self._ending_prompt.endswith("-agent-left")
        end: c.Command = (c.Hangup() if agent_left and self.o.on_agent_hangup == "hangup"
                          else c.ContinueDialplan())
        return K.DONE, [end, c.Finish(result=self.result)]

    def _ending_resynchronised(self, event: Resynchronised) -> Step[K]:
        """After an ARI outage the prompt's PlaybackFinished may be lost: end as if it played."""
        return self._ending_played(PlaybackFinished(at=event.at, playback_id=self._ending_prompt))

    def _agent_left(self, event: LegGone) -> Step[K]:
        if event.leg in MEDIA_LEGS:
            return self.state, self.slot.media(event)
        if event.leg != AGENT:
            return self.state, []
        left = c.Publish(topic="call", payload=(("stage", "agent_left"),))
        if self.slot.active() is not None:
            # Never leave the caller in silence: tell them, then handle per config.
            commands = self.slot.abandon("cancelled", "agent_left")
            self._ending_prompt = f"{self.call_id}-k-agent-left"
            return K.ENDING, [*commands, c.DestroyBridge(bridge_id=self.bridge_id), left,
                              c.Play(playback_id=self._ending_prompt,
                                     media=("sound:callsec/agent-left",),
                                     language=self.verification.language)]
        end: c.Command = (c.Hangup() if self.o.on_agent_hangup == "hangup"
                          else c.ContinueDialplan())
        return K.DONE, [c.DestroyBridge(bridge_id=self.bridge_id), left, end,
                        c.Finish(result=self.result)]

    def _caller_left(self, event: CallerHungUp) -> Step[K]:
        return K.DONE, [*self.slot.abandon("hangup", "caller_left"),
                        c.CancelTimer(name=DIAL_TIMER), c.HangupLeg(leg=AGENT),
                        c.DestroyBridge(bridge_id=self.bridge_id),
                        c.Publish(topic="call", payload=(("stage", "caller_left"),)),
                        c.Finish(result=self.result)]

    # -- taken over after a restart, or back after a reconnect ------------------------------
    def _recovered(self, event: Recovered) -> Step[K]:
        capture_bridge = self.slot.capture_bridge
        out: list[c.Command] = []
        if event.capture and event.caller_present:
            out.append(c.RemoveFromBridge(bridge_id=capture_bridge, leg="caller"))
            if event.agent_present:
                out.append(c.AddToBridge(bridge_id=self.bridge_id, leg="caller",
                                         absorb_dtmf=True))
        out += [c.HangupLeg(leg=leg) for leg in event.media]  # talk-through media legs
        if event.capture:
            out += [c.DestroyBridge(bridge_id=capture_bridge),
                    cp.CloseOpenCaptures(reason="callsec_restart")]
            if event.caller_present:
                out.append(cp.MuteRecording(leg="caller", mute=False))
        if not event.caller_present:
            to, end = self._caller_left(CallerHungUp(at=event.at))
            return to, [*out, *end]
        if event.agent_present:
            if event.capture:
                out += self._tell_both("capture-cancelled")
            return self.state, [*out, c.Publish(topic="call", payload=(("stage", "connected"),))]
        prompt = "agent-left" if event.capture else "agent-unavailable"
        self._ending_prompt = f"{self.call_id}-k-{prompt}"
        return K.ENDING, [*out, c.StopMoh(leg="caller"), c.HangupLeg(leg=AGENT),
                          c.DestroyBridge(bridge_id=self.bridge_id),
                          c.Publish(topic="call", payload=(("stage", "agent_left"),)),
                          c.Play(playback_id=self._ending_prompt,
                                 media=(f"sound:callsec/{prompt}",),
                                 language=self.verification.language)]

    def _tell_both(self, prompt: str) -> list[c.Command]:
        return [c.Play(playback_id=f"{self.call_id}-k-recovered", leg="caller",
                       media=(f"sound:callsec/{prompt}", "sound:beep"),
                       language=self.verification.language),
                c.Play(playback_id=f"{self.call_id}-k-recovered-beep", media=("sound:beep",),
                       leg=AGENT)]

    def _resynchronised(self, event: Resynchronised) -> Step[K]:
        media = self.slot.unsettled()
        if media is not None:  # a give-back sent into the outage: put the caller back now
            return self._recovered(Recovered(at=event.at, capture=True, media=media))
        return self.state, self.slot.cancel("reconnect")

    # -- captures (CONNECTED): the capture slot ------------------------------------------
    def _capture_requested(self, event: cp.CaptureRequested) -> Step[K]:
        return self.state, self.slot.request(event, *self._who)

    def _approval_requested(self, event: af.ApprovalRequested) -> Step[K]:
        return self.state, self.slot.approval(event, *self._who)

    def _digit(self, event: DtmfReceived) -> Step[K]:
        return self.state, self.slot.digit(event, *self._who)

    def _field_control(self, event: cp.FieldControl) -> Step[K]:
        return self.state, self.slot.control(event, *self._who)

    def _capture_cancelled(self, event: cp.CaptureCancelled) -> Step[K]:
        if self.slot.active(event.capture_id) is None:
            return self.state, []
        return self.state, self.slot.cancel(f"cancelled_by_{event.by}")

    def _to_capture(self, event: Event) -> Step[K]:
        return self.state, self.slot.handle(event)

    def _to_named_capture(self, event: cp.CaptureStored | ApprovalChecked) -> Step[K]:
        name = event.capture_id if isinstance(event, cp.CaptureStored) else event.approval_id
        return self.state, self.slot.handle(event, name)

    def _media(self, event: Event) -> Step[K]:
        return self.state, self.slot.media(event)

    def _failed(self, event: CommandFailed) -> Step[K]:
        if self.state is K.CONNECTED or self.slot.route is not None:
            return self.state, self.slot.failed(event)
        if self.state is K.DIALLING and issubclass(
                event.command, (c.DialLeg, c.AddToBridge, c.CreateBridge)):
            return self._not_reached(event)
        return self.state, []


#: Events dropped in any state the table has no entry for them in (late, or not this leg's).
IGNORED = (PlaybackFinished, TimerExpired, DtmfReceived, Resynchronised, LegGone, LegAnswered,
           ConfirmationAnswered, cp.RecordingMuted, cp.CaptureStored, cp.CaptureCancelled,
           cp.MediaOpened, ExternalMediaReady, cp.MediaConnected, cp.MediaClosed,
           af.ApprovalRequested, ApprovalChecked, cp.FieldControl)
F, CONNECTED = ConnectFlow, K.CONNECTED
TABLE = Table[ConnectFlow, K](K, final=(K.DONE,), ignored=IGNORED)
# the verification flow runs the call until it ends (hang-ups and failures included)
for _event in (Event, CallerHungUp, CommandFailed):
    TABLE.on(K.VERIFYING, _event, F._verifying, K.DIALLING, K.DONE)
TABLE.on((K.VERIFYING, K.DIALLING, K.ENDING), cp.CaptureRequested, F._not_connected)
TABLE.on(K.DIALLING, LegAnswered, F._answered, CONNECTED)
TABLE.on(K.DIALLING, LegGone, F._not_reached, K.ENDING)
TABLE.on(K.DIALLING, TimerExpired, F._not_reached, K.ENDING)
TABLE.on(K.ENDING, PlaybackFinished, F._ending_played, K.DONE)
TABLE.on(K.ENDING, Resynchronised, F._ending_resynchronised, K.DONE)
TABLE.on(CONNECTED, LegGone, F._agent_left, K.ENDING, K.DONE)
TABLE.on(CONNECTED, Recovered, F._recovered, K.ENDING, K.DONE)
TABLE.on(CONNECTED, Resynchronised, F._resynchronised, K.ENDING, K.DONE)
TABLE.on(CONNECTED, cp.CaptureRequested, F._capture_requested)
TABLE.on(CONNECTED, cp.CaptureCancelled, F._capture_cancelled)
TABLE.on(CONNECTED, af.ApprovalRequested, F._approval_requested)
TABLE.on(CONNECTED, cp.FieldControl, F._field_control)
TABLE.on(CONNECTED, DtmfReceived, F._digit)
TABLE.on(CONNECTED, cp.RecordingMuted, F._to_capture)
TABLE.on(CONNECTED, TimerExpired, F._to_capture)
TABLE.on(CONNECTED, PlaybackFinished, F._to_capture)
TABLE.on(CONNECTED, cp.CaptureStored, F._to_named_capture)
TABLE.on(CONNECTED, ApprovalChecked, F._to_named_capture)
TABLE.on(CONNECTED, cp.MediaOpened, F._media)
TABLE.on(CONNECTED, ExternalMediaReady, F._media)
TABLE.on(CONNECTED, cp.MediaConnected, F._media)
TABLE.on(ANY, cp.MediaClosed, F._media)
TABLE.on(ANY, CallerHungUp, F._caller_left, K.DONE)
TABLE.on(ANY, CommandFailed, F._failed, K.ENDING)
ConnectFlow.TABLE = TABLE
