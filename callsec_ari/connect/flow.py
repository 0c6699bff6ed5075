"""``Stasis(callsec,connect,<dial string>)``: verification per policy, then callsec dials the
agent and owns the bridge for the rest of the call (so captures are possible).

An unverified caller is never connected unless the policy says ``connect_unverified``; such a
caller goes back to the dialplan with ``CALLSEC_RESULT`` set, so the dialplan can route them.
Both legs join the bridge with ``absorb_dtmf=True``: keys the caller presses never reach the
agent's phone as DTMF, and the agent's feature codes never reach the caller.

A call a previous callsec process connected is taken over with :meth:`ConnectFlow.adopt` and a
first :class:`Recovered` event (``callsec_ari/ari/recovery.py`` finds it by its bridges): the
caller comes back from an orphaned capture, or hears why the agent is gone. After a websocket
reconnect (``Resynchronised``) a running capture is cancelled and the caller given back: the
keys pressed while callsec could not hear them are lost, so the entry cannot be trusted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum, auto

from callsec_ari.approval import flow as af
from callsec_ari.capture import protocol as cp
from callsec_ari.capture.entry import EntryOptions, FieldEntry
from callsec_ari.capture.fields import ValidationContext
from callsec_ari.capture.steering import CaptureSteering, SteeringOptions
from callsec_ari.capture.talkthrough import MEDIA_DIGITS, MEDIA_LEGS, TalkThroughSteering
from callsec_ari.core import commands as c
from callsec_ari.core.events import (
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
from callsec_ari.core.flow import ANY, TableFlow
from callsec_ari.verification.flow import V, VerificationFlow
from callsec_ari.verification.protocol import ConfirmationAnswered, CustomerView

DIAL_TIMER = "dial"
AGENT = "agent"


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


@dataclass(frozen=True, kw_only=True)
class CaptureOptions:
    context: ValidationContext
    entry: EntryOptions
    capture_timeout: float = 180.0
    #: Agent keypad feature codes (``*1``) -> field set name in ``FIELD_SETS``.
    feature_codes: tuple[tuple[str, str], ...] = (("*1", "card"), ("*2", "bank"), ("*3", "id"))
    #: Makes capture ids for captures the agent starts from the keypad.
    new_id: Callable[[], str] = lambda: "CP-local"
    #: ``bridge`` | ``talk_through`` (``capture/talkthrough.py``), unless the request names one.
    mode: str = "bridge"
    #: A talk-through capture whose media cannot be set up goes on as a bridge capture.
    fallback_to_bridge: bool = False


@dataclass(frozen=True, kw_only=True)
class Recovered(Event):
    """The first event of an adopted call: what a restarted callsec found in Asterisk."""

    caller_present: bool = True
    #: The agent's leg is still in the call's bridge ``callsec-call-<call id>``.
    agent_present: bool = True
    #: The capture bridge ``callsec-capture-<call id>`` was found (a capture was running).
    capture: bool = False
    #: Talk-through media legs (``media-caller``, ``media-agent``) still in Asterisk.
    media: tuple[str, ...] = ()


class K(Enum):
    VERIFYING = auto()
    DIALLING = auto()
    CONNECTED = auto()
    ENDING = auto()
    DONE = auto()


class ConnectFlow(TableFlow[K]):
    FINAL_STATES = frozenset({K.DONE})
    IGNORED_EVERYWHERE = (PlaybackFinished, TimerExpired, DtmfReceived, Resynchronised, LegGone,
                          LegAnswered, cp.RecordingMuted, cp.CaptureStored, cp.CaptureCancelled,
                          cp.MediaOpened, ExternalMediaReady, cp.MediaConnected, cp.MediaClosed,
                          af.ApprovalRequested, af.ApprovalChecked,
                          cp.FieldControl)

    def __init__(self, call_id: str, verification: VerificationFlow,
                 options: ConnectOptions) -> None:
        super().__init__(call_id, K.VERIFYING)
        self.verification = verification
        self.o = options
        self.bridge_id = f"callsec-call-{call_id}"
        self.result = ""
        self._ending_prompt = f"{call_id}-k-unavailable"
        self.capture: CaptureSteering | None = None
        self._agent_keys = ""
        self._agent_key_at = 0.0
        self._unsettled = False  # a capture's give-back failed: Asterisk was out of reach

    def adopt(self, *, result: str, customer_ref: str, language: str) -> None:
        """Take over a call connected by a previous callsec process: straight to CONNECTED
        (its verification ended long ago: ``result``, from ``CALLSEC_RESULT``)."""
        self.result = result
        self.verification.result = result
        self.verification.language = language or self.verification.language
        if customer_ref:
            self.verification.customer = CustomerView(ref=customer_ref)
        self.verification.state = V.DONE
        self.state = K.CONNECTED

    def handle(self, event: Event) -> list[c.Command]:
        if isinstance(event, cp.CaptureRequested) and self.state is not K.CONNECTED:
            # The API checked CONNECTED, then awaited its audit entry: the call moved on.
            return [] if self.done else [c.Publish(topic="capture", payload=(
                ("capture_id", event.capture_id), ("stage", "rejected"),
                ("reason", "not_connected")))]
        if self.state is not K.VERIFYING:
            if isinstance(event, ConfirmationAnswered):
                return []  # the customer answered after the verification had ended
            return super().handle(event)
        commands = self.verification.handle(event)
        if self.verification.done:
            commands += self._verified()
        return commands

    def _verified(self) -> list[c.Command]:
        self.result = self.verification.result
        if self.result == "hangup":
            self.state = K.DONE
            return [c.Finish(result="hangup")]
        # "this is not me": the caller is never connected, whatever connect_unverified says
        if self.result not in ("verified", "skipped") and (
                not self.o.connect_unverified or self.result == "denied"):
            self.state = K.DONE
            return [c.ContinueDialplan(), c.Finish(result=self.result)]
        self.state = K.DIALLING
        ref = self.verification.verified_customer  # an unverified caller: "callsec"
        return [
            c.Publish(topic="call", payload=(("stage", "dialling"),)),
            c.StartMoh(leg="caller", moh_class=self.o.moh_class),
            c.CreateBridge(bridge_id=self.bridge_id, name=self.bridge_id),
            c.DialLeg(leg=AGENT, endpoint=self.o.dial_string, caller_id=ref or "callsec",
                      timeout=self.o.dial_timeout),
            c.StartTimer(name=DIAL_TIMER, seconds=self.o.dial_timeout + 5),
        ]

    def _answered(self, event: LegAnswered) -> list[c.Command]:
        if event.leg != AGENT:
            return []
        self.state = K.CONNECTED
        return [
            c.CancelTimer(name=DIAL_TIMER),
            c.StopMoh(leg="caller"),
            c.AddToBridge(bridge_id=self.bridge_id, leg="caller", absorb_dtmf=True),
            c.AddToBridge(bridge_id=self.bridge_id, leg=AGENT, absorb_dtmf=True),
            c.Publish(topic="call", payload=(("stage", "connected"),)),
        ]

    def _not_reached(self, event: Event) -> list[c.Command]:
        if isinstance(event, LegGone) and event.leg != AGENT:
            return []
        if isinstance(event, TimerExpired) and event.name != DIAL_TIMER:
            return []
        self.state = K.ENDING
        return [
            c.CancelTimer(name=DIAL_TIMER), c.StopMoh(leg="caller"), c.HangupLeg(leg=AGENT),
            c.DestroyBridge(bridge_id=self.bridge_id),
            c.SetVariables(values=(("CALLSEC_AGENT", "unavailable"),)),
            c.Publish(topic="call", payload=(("stage", "agent_unavailable"),)),
            c.Play(playback_id=self._ending_prompt, media=("sound:callsec/agent-unavailable",),
                   language=self.verification.language),
        ]

    def _ending_played(self, event: PlaybackFinished) -> list[c.Command]:
        if event.playback_id != self._ending_prompt:
            return []
        self.state = K.DONE
        agent_left = self._ending_prompt.endswith("-agent-left")
        end: c.Command = (c.Hangup() if agent_left and self.o.on_agent_hangup == "hangup"
                          else c.ContinueDialplan())
        return [end, c.Finish(result=self.result)]

    def _ending_resynchronised(self, event: Resynchronised) -> list[c.Command]:
        """After an ARI outage the prompt's PlaybackFinished may be lost: end as if it played."""
        return self._ending_played(PlaybackFinished(at=event.at, playback_id=self._ending_prompt))

    def _agent_left(self, event: LegGone) -> list[c.Command]:
        if event.leg in MEDIA_LEGS:
            return self._media(event)
        if event.leg != AGENT:
            return []
        commands: list[c.Command] = []
        if self.capture is not None and self.capture.stage != "done":
            # Never leave the caller in silence: tell them, then handle per config.
            commands += self.capture.abandon("cancelled", "agent_left")
            self.capture = None
            self.state = K.ENDING
            self._ending_prompt = f"{self.call_id}-k-agent-left"
            return [*commands, c.DestroyBridge(bridge_id=self.bridge_id),
                    c.Publish(topic="call", payload=(("stage", "agent_left"),)),
                    c.Play(playback_id=self._ending_prompt, media=("sound:callsec/agent-left",),
                           language=self.verification.language)]
        self.state = K.DONE
        end: c.Command = (c.Hangup() if self.o.on_agent_hangup == "hangup"
                          else c.ContinueDialplan())
        return [c.DestroyBridge(bridge_id=self.bridge_id),
                c.Publish(topic="call", payload=(("stage", "agent_left"),)),
                end, c.Finish(result=self.result)]

    def _caller_left(self, event: CallerHungUp) -> list[c.Command]:
        commands: list[c.Command] = []
        if self.capture is not None and self.capture.stage != "done":
            commands += self.capture.abandon("hangup", "caller_left")
            self.capture = None
        self.state = K.DONE
        return [*commands, c.CancelTimer(name=DIAL_TIMER), c.HangupLeg(leg=AGENT),
                c.DestroyBridge(bridge_id=self.bridge_id),
                c.Publish(topic="call", payload=(("stage", "caller_left"),)),
                c.Finish(result=self.result)]

    # -- taken over after a restart, or back after a reconnect ------------------------------
    def _recovered(self, event: Recovered) -> list[c.Command]:
        capture_bridge = f"callsec-capture-{self.call_id}"
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
            return [*out, *self._caller_left(CallerHungUp(at=event.at))]
        if event.agent_present:
            if event.capture:
                out += self._tell_both("capture-cancelled")
            return [*out, c.Publish(topic="call", payload=(("stage", "connected"),))]
        self.state = K.ENDING
        prompt = "agent-left" if event.capture else "agent-unavailable"
        self._ending_prompt = f"{self.call_id}-k-{prompt}"
        return [*out, c.StopMoh(leg="caller"), c.HangupLeg(leg=AGENT),
                c.DestroyBridge(bridge_id=self.bridge_id),
                c.Publish(topic="call", payload=(("stage", "agent_left"),)),
                c.Play(playback_id=self._ending_prompt, media=(f"sound:callsec/{prompt}",),
                       language=self.verification.language)]

    def _tell_both(self, prompt: str) -> list[c.Command]:
        return [c.Play(playback_id=f"{self.call_id}-k-recovered", leg="caller",
                       media=(f"sound:callsec/{prompt}", "sound:beep"),
                       language=self.verification.language),
                c.Play(playback_id=f"{self.call_id}-k-recovered-beep", media=("sound:beep",),
                       leg=AGENT)]

    def _resynchronised(self, event: Resynchronised) -> list[c.Command]:
        capture = self._active()
        if capture is None:
            if not self._unsettled:
                return []
            # A give-back sent into the outage never reached Asterisk: put the caller back now.
            self._unsettled = False
            media = MEDIA_LEGS if isinstance(self.capture, TalkThroughSteering) else ()
            return self._recovered(Recovered(at=event.at, capture=True, media=media))
        if capture.stage == "muting":
            return capture.abandon("cancelled", "reconnect")
        return capture.give_back("cancelled", "reconnect")

    # -- captures (CONNECTED) -------------------------------------------------------------
    def _capture_requested(self, event: cp.CaptureRequested) -> list[c.Command]:
        captures = self.o.captures
        if captures is None or (self.capture is not None and self.capture.stage != "done"):
            reason = "busy" if captures is not None else "not_offered"
            return [c.Publish(topic="capture", payload=(
                ("capture_id", event.capture_id), ("stage", "rejected"), ("reason", reason)))]
        ref = self.verification.verified_customer  # an unverified call files under no one
        language = self.verification.language
        entry = FieldEntry(event.capture_id, event.fields, captures.context,
                           replace(captures.entry, language=language), event.optional)
        options = SteeringOptions(
            agent_bridge=self.bridge_id, capture_bridge=f"callsec-capture-{self.call_id}",
            customer_ref=ref, capture_timeout=captures.capture_timeout, language=language)
        if (event.mode or captures.mode) == "talk_through":
            self.capture = TalkThroughSteering(event, entry, options,
                                               fallback=captures.fallback_to_bridge)
        else:
            self.capture = CaptureSteering(event, entry, options)
        return self.capture.start()

    def _active(self, capture_id: str | None = None) -> CaptureSteering | None:
        capture = self.capture
        if capture is None or capture.stage == "done":
            return None
        if capture_id is not None and capture.capture_id != capture_id:
            return None
        return capture

    def _muted(self, event: cp.RecordingMuted) -> list[c.Command]:
        capture = self._active()
        if capture is None or not event.mute or capture.stage != "muting":
            return []
        return capture.muted()

    def _connected_digit(self, event: DtmfReceived) -> list[c.Command]:
        capture = self._active()
        if event.leg in ("caller", MEDIA_DIGITS):
            if capture is not None and capture.stage == "entering":
                if isinstance(capture, TalkThroughSteering):
                    return capture.digit_from(event.leg, event.digit, event.at)
                return capture.digit(event.digit, event.at) if event.leg == "caller" else []
            return []
        if event.leg == AGENT and capture is None:
            return self._feature_code(event)
        return []

    def _feature_code(self, event: DtmfReceived) -> list[c.Command]:
        captures = self.o.captures
        if captures is None:
            return []
        if event.at - self._agent_key_at > 3.0:
            self._agent_keys = ""
        self._agent_keys = (self._agent_keys + event.digit)[-3:]
        self._agent_key_at = event.at
        for code, field_set in captures.feature_codes:
            if self._agent_keys.endswith(code):
                self._agent_keys = ""
                return self._capture_requested(cp.CaptureRequested(
                    capture_id=captures.new_id(), fields=cp.FIELD_SETS[field_set],
                    requested_by="agent-keypad", at=event.at))
        return []

    def _connected_timer(self, event: TimerExpired) -> list[c.Command]:
        capture = self._active()
        return capture.timer(event.name) if capture is not None else []

    def _connected_played(self, event: PlaybackFinished) -> list[c.Command]:
        capture = self._active()
        return capture.played(event.playback_id) if capture is not None else []

    def _capture_cancelled(self, event: cp.CaptureCancelled) -> list[c.Command]:
        capture = self._active(event.capture_id)
        if capture is None:
            return []
        if capture.stage == "muting":
            return capture.abandon("cancelled", f"cancelled_by_{event.by}")
        return capture.give_back("cancelled", f"cancelled_by_{event.by}")

    def _field_control(self, event: cp.FieldControl) -> list[c.Command]:
        capture = self._active(event.capture_id)
        if capture is not None:
            return capture.control(event)
        done = self.capture  # a re-request re-opens the just-finished capture for the field
        reopen = done.reopen(event) if done is not None and done.capture_id == \
            event.capture_id and self._active() is None else None
        return self._capture_requested(reopen) if reopen is not None else []

    def _approval_requested(self, event: af.ApprovalRequested) -> list[c.Command]:
        """A payment approval (``approval/flow.py``) takes the capture slot."""
        captures, approvals = self.o.captures, self.o.approvals
        if captures is None or approvals is None or self._active() is not None:
            return [af.FinishApproval(approval_id=event.approval_id, result="failed",
                                      reason="busy")]
        language = self.verification.language
        options = SteeringOptions(
            agent_bridge=self.bridge_id, capture_bridge=f"callsec-capture-{self.call_id}",
            customer_ref=self.verification.verified_customer,
            capture_timeout=approvals.entry_timeout, language=language)
        self.capture = af.ApprovalSteering(event, captures.context, options, approvals)
        return self.capture.start()

    def _approval_checked(self, event: af.ApprovalChecked) -> list[c.Command]:
        capture = self._active(event.approval_id)
        return capture.handle(event) if isinstance(capture, af.ApprovalSteering) else []

    def _capture_stored(self, event: cp.CaptureStored) -> list[c.Command]:
        capture = self._active(event.capture_id)
        if capture is None:
            return []
        capture.stored_as = event.stored_as
        return capture.stored()

    def _failed(self, event: CommandFailed) -> list[c.Command]:
        capture = self._active()
        if isinstance(capture, af.ApprovalSteering):
            return capture.command_failed(event.command, event.error_id)
        if isinstance(capture, TalkThroughSteering) and capture.stage == "media":
            return self._media(event)
        if capture is not None:
            if event.command == "MuteRecording" and capture.stage == "muting":
                return capture.mute_failed(event.error_id)
            if event.command == "StoreCapture":
                return capture.give_back("cancelled", "store_failed")
            if event.command in ("CreateBridge", "AddToBridge", "RemoveFromBridge"):
                return capture.give_back("cancelled", "bridge_failed")
            return []
        if event.error_id == "ari_unavailable" and self.capture is not None and \
                event.command in ("RemoveFromBridge", "AddToBridge", "DestroyBridge"):
            self._unsettled = True  # redone by the reconnect's Resynchronised
        if event.error_id == "ari_unavailable" and event.command == "HangupLeg" and \
                isinstance(self.capture, TalkThroughSteering):
            self._unsettled = True  # a media leg left behind: hung up on Resynchronised
        if self.state is K.DIALLING and event.command in ("DialLeg", "AddToBridge",
                                                         "CreateBridge"):
            return self._not_reached(event)
        return []

    def _media(self, event: Event) -> list[c.Command]:
        """Talk-through media events (``capture/talkthrough.py``); a capture that fell back
        to bridge mode is replaced by its successor."""
        capture = self.capture
        if not isinstance(capture, TalkThroughSteering):
            return []
        commands = capture.handle_media(event)
        if capture.successor is not None:
            self.capture = capture.successor
        return commands

    TABLE = {
        (K.DIALLING, LegAnswered): _answered,
        (K.DIALLING, LegGone): _not_reached,
        (K.DIALLING, TimerExpired): _not_reached,
        (K.ENDING, PlaybackFinished): _ending_played,
        (K.ENDING, Resynchronised): _ending_resynchronised,
        (K.CONNECTED, LegGone): _agent_left,
        (K.CONNECTED, cp.CaptureRequested): _capture_requested,
        (K.CONNECTED, cp.CaptureCancelled): _capture_cancelled,
        (K.CONNECTED, af.ApprovalRequested): _approval_requested,
        (K.CONNECTED, af.ApprovalChecked): _approval_checked,
        (K.CONNECTED, cp.FieldControl): _field_control,
        (K.CONNECTED, cp.RecordingMuted): _muted,
        (K.CONNECTED, cp.CaptureStored): _capture_stored,
        (K.CONNECTED, DtmfReceived): _connected_digit,
        (K.CONNECTED, TimerExpired): _connected_timer,
        (K.CONNECTED, PlaybackFinished): _connected_played,
        (K.CONNECTED, Recovered): _recovered,
        (K.CONNECTED, Resynchronised): _resynchronised,
        (K.CONNECTED, cp.MediaOpened): _media,
        (K.CONNECTED, ExternalMediaReady): _media,
        (K.CONNECTED, cp.MediaConnected): _media,
        (ANY, cp.MediaClosed): _media,
        (ANY, CallerHungUp): _caller_left,
        (ANY, CommandFailed): _failed,
    }
