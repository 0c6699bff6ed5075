"""Steering one talk-through capture (pure): the agent stays in the conversation while the caller
types, and the key tones never reach the agent.

``stage``: ``muting`` -> ``media`` -> ``entering`` -> ``storing`` -> ``done``.

After the caller's recordings are muted the capture bridge ``callsec-capture-<call id>`` is
created and a relay opened (``OpenMedia`` -> ``MediaOpened``: two UDP ports). Two media channels
stream to it (``CreateExternalMedia`` ``media-caller`` and ``media-agent`` ->
``ExternalMediaReady`` once each is in callsec's application); ``media-caller`` joins the capture
bridge, ``media-agent`` the agent's bridge, and the relay learns their RTP addresses
(``ConnectMedia`` -> ``MediaConnected``). Only then does the caller move (out of the agent's
bridge, into the capture bridge, absorbing DTMF), so the caller is never in silence and never
waits on a half-built relay. Audio then goes capture bridge -> ``media-caller`` -> relay (DTMF
filter, leak scan) -> ``media-agent`` -> agent, and the agent's voice comes back unchanged. The
field prompts play into the capture bridge: the caller hears them, and through the relay so does
the agent, who knows where the caller is. There is no hold loop for the agent in this mode.

A media command that fails before the caller moved tears the media down; the capture ends
``cancelled`` (reason ``media_failed``), or with ``fallback`` goes on as a bridge capture
(:attr:`successor`). Ending (give back, abandon, timeout, hang-ups): the caller goes back to the
agent's bridge first, then the media channels are hung up and the relay closed
(``CloseMedia`` -> ``MediaClosed``: its signed evidence is stored with the capture record and
published to the agent's desk).

Digit sources: RFC 4733 digits arrive as the caller's ``DtmfReceived`` (``leg="caller"``; the
caller's ``absorbDTMF`` keeps them off the media channel); in-band digits the relay detects arrive
as ``leg="caller-media"``. Asterisk's own in-band detector on an ``inband`` endpoint may report
the same presses on ``caller``, so one source keys the capture: the first to report a digit,
except that Asterisk outranks the relay. The relay's detector can mistake a voice for a key for
two frames (talk-off); had that locked the capture to the relay, the caller's keypad (RFC 4733)
would be ignored. So the first digit Asterisk reports makes it the source for the rest of the
capture, and the digits the relay put into the current field are discarded (a restart, as if
the caller pressed ``*``). Both report each press within a frame or two of each other, so the
switch comes at the first press, long before the relay alone could complete a field.
"""

from __future__ import annotations

from dataclasses import replace

from callsec_ari.capture import protocol as cp
from callsec_ari.capture.entry import FieldEntry
from callsec_ari.capture.steering import OVERALL, CaptureSteering, SteeringOptions
from callsec_ari.core import commands as c
from callsec_ari.core.events import (
    CommandFailed,
    DtmfReceived,
    Event,
    ExternalMediaReady,
    LegGone,
)

MEDIA_CALLER = "media-caller"
MEDIA_AGENT = "media-agent"
MEDIA_LEGS = (MEDIA_CALLER, MEDIA_AGENT)
#: ``DtmfReceived.leg`` of digits the relay detected in the caller's audio.
MEDIA_DIGITS = "caller-media"
#: What the evidence publish shows the agent (``Publish`` payload name <- evidence field).
_MEDIA_EVENTS = (cp.MediaOpened, ExternalMediaReady, cp.MediaConnected, cp.MediaClosed, LegGone)
EVIDENCE_SHOWN = (("tones_masked", "digits_detected"), ("frames_masked", "frames_flattened"),
                  ("leaked", "leaked_tone_frames"), ("frames_relayed", "frames_relayed"))


class TalkThroughSteering(CaptureSteering):
    mode = "talk_through"

    def __init__(self, request: cp.CaptureRequested, entry: FieldEntry,
                 options: SteeringOptions, *, fallback: bool = False) -> None:
        super().__init__(request, entry, options)
        self.fallback = fallback
        #: Asterisk's RTP address of each media leg, once ready.
        self.media: dict[str, tuple[str, int]] = {}
        self.caller_moved = False
        #: ``caller`` or ``caller-media``: the first source that reported a digit.
        self.digit_source = ""
        #: The bridge capture this one fell back to (the flow switches to it).
        self.successor: CaptureSteering | None = None

    # -- building the media path (stage "media") --------------------------------------------
    def muted(self) -> list[c.Command]:
        self.stage = "media"
        return [c.CreateBridge(bridge_id=self.o.capture_bridge, name=self.o.capture_bridge),
                cp.OpenMedia(capture_id=self.capture_id)]

    media_legs = MEDIA_LEGS

    def handle(self, event: Event) -> list[c.Command]:
        if isinstance(event, _MEDIA_EVENTS):
            return self.handle_media(event)
        return super().handle(event)

    def failed(self, event: CommandFailed) -> list[c.Command]:
        return self.handle_media(event) if self.stage == "media" else super().failed(event)

    def _key(self, event: DtmfReceived) -> list[c.Command]:
        if event.leg not in ("caller", MEDIA_DIGITS):
            return []
        return self.digit_from(event.leg, event.digit, event.at)

    def handle_media(self, event: Event) -> list[c.Command]:
        """The media events: ``MediaOpened``, ``ExternalMediaReady``, ``MediaConnected``,
        ``MediaClosed``, a media leg's ``LegGone`` and (stage ``media``) ``CommandFailed``."""
        if isinstance(event, cp.MediaClosed):
            return self._evidence(event)
        if isinstance(event, LegGone):
            return self._media_gone(event)
        if self.stage != "media":
            return []
        if isinstance(event, CommandFailed):
            return self.media_failed(event.error_id)
        if isinstance(event, cp.MediaOpened) and event.capture_id == self.capture_id:
            return [c.CreateExternalMedia(leg=MEDIA_CALLER, host=event.host,
                                          port=event.caller_port, format="ulaw"),
                    c.CreateExternalMedia(leg=MEDIA_AGENT, host=event.host,
                                          port=event.agent_port, format="ulaw")]
        if isinstance(event, ExternalMediaReady) and event.leg in MEDIA_LEGS:
            return self._media_ready(event)
        if isinstance(event, cp.MediaConnected) and event.capture_id == self.capture_id:
            return self._move_caller()
        return []

    def _media_ready(self, event: ExternalMediaReady) -> list[c.Command]:
        self.media[event.leg] = (event.address, event.port)
        if len(self.media) < len(MEDIA_LEGS):
            return []
        # ConnectMedia last: a failed join comes back (CommandFailed) before MediaConnected.
        return [c.AddToBridge(bridge_id=self.o.capture_bridge, leg=MEDIA_CALLER, absorb_dtmf=True),
                c.AddToBridge(bridge_id=self.o.agent_bridge, leg=MEDIA_AGENT, absorb_dtmf=True),
                cp.ConnectMedia(capture_id=self.capture_id, caller=self.media[MEDIA_CALLER],
                                agent=self.media[MEDIA_AGENT])]

    def _move_caller(self) -> list[c.Command]:
        self.stage = "entering"
        self.caller_moved = True
        return [c.RemoveFromBridge(bridge_id=self.o.agent_bridge, leg="caller"),
                c.AddToBridge(bridge_id=self.o.capture_bridge, leg="caller", absorb_dtmf=True),
                c.StartTimer(name=OVERALL, seconds=self.o.capture_timeout),
                self._publish("started", mode=self.mode),
                *self._to_bridge(self.entry.start())]

    def media_failed(self, error_id: str) -> list[c.Command]:
        """The media path could not be built; the caller never left the agent."""
        teardown = self._tear_down()
        if self.fallback:
            self.stage, self.result = "done", "fallback"
            self.successor = CaptureSteering(self.request, self.entry, self.o)
            return [*teardown, self._publish("fallback", reason="media_failed",
                                             error_id=error_id), *self.successor.muted()]
        self.entry.wipe()
        self.stage, self.result = "done", "cancelled"
        return [*teardown, cp.MuteRecording(leg="caller", mute=False),
                self._publish("finished", result="cancelled", reason="media_failed",
                              error_id=error_id),
                self._record("cancelled", "media_failed")]

    def _media_gone(self, event: LegGone) -> list[c.Command]:
        if event.leg not in MEDIA_LEGS:
            return []
        if self.stage == "media":
            return self.media_failed("media_channel_gone")
        if self.stage == "entering":  # the agent can no longer hear the caller
            return self.give_back("cancelled", "media_lost")
        return []

    def _tear_down(self) -> list[c.Command]:
        """Media legs, relay, capture bridge: in this order (the bridge outlives the legs, so
        a restarted callsec still finds and hangs up legs a dead one left)."""
        return [*[c.HangupLeg(leg=leg) for leg in MEDIA_LEGS],
                cp.CloseMedia(capture_id=self.capture_id),
                c.DestroyBridge(bridge_id=self.o.capture_bridge)]

    def _evidence(self, event: cp.MediaClosed) -> list[c.Command]:
        if event.capture_id != self.capture_id or not event.evidence:
            return []
        evidence = dict(event.evidence)
        shown = {name: value for name, field in EVIDENCE_SHOWN
                 if isinstance(value := evidence.get(field), int)}
        return [self._publish("evidence", **shown)]

    # -- entering (stage "entering") -------------------------------------------------------
    def _to_bridge(self, commands: list[c.Command]) -> list[c.Command]:
        """The entry's prompts play into the capture bridge, not to the caller's channel."""
        return [replace(cmd, bridge_id=self.o.capture_bridge)
                if isinstance(cmd, c.Play) and not cmd.bridge_id and cmd.leg == "caller" else cmd
                for cmd in commands]

    def digit_from(self, source: str, key: str, at: float) -> list[c.Command]:
        """A digit from ``caller`` (Asterisk) or ``caller-media`` (the relay's detector)."""
        if source == self.digit_source or not self.digit_source:
            self.digit_source = source
            return self.digit(key, at)
        if source == MEDIA_DIGITS:
            return []  # Asterisk reports this caller's keys: the detector is only a fallback
        self.digit_source = source  # the keypad outranks what may have been talk-off
        restart = self.digit("*", at) if self.entry.collector.count else []
        return restart + self.digit(key, at)

    def digit(self, key: str, at: float) -> list[c.Command]:
        return self._to_bridge(super().digit(key, at))

    def timer(self, name: str) -> list[c.Command]:
        return self._to_bridge(super().timer(name))

    def played(self, playback_id: str) -> list[c.Command]:
        return []  # no hold loop: the agent hears the caller

    # -- ending: the caller back to the agent's bridge first, then the media torn down ----------
    def _return_caller(self) -> list[c.Command]:
        back = [c.RemoveFromBridge(bridge_id=self.o.capture_bridge, leg="caller"),
                c.AddToBridge(bridge_id=self.o.agent_bridge, leg="caller", absorb_dtmf=True)]
        return [*[c.StopPlayback(playback_id=pid) for pid in self.entry.prompts],
                *(back if self.caller_moved else []), *self._tear_down()]

    def _back_prompts(self, back: str) -> list[c.Command]:
        return [c.Play(playback_id=f"{self.capture_id}-back", language=self.o.language,
                       bridge_id=self.o.agent_bridge, media=(back, "sound:beep"))]

    def _finished_extra(self) -> dict[str, str | int | bool]:
        return {}

def steer(request: cp.CaptureRequested, entry: FieldEntry, options: SteeringOptions, *,
          mode: str, fallback: bool) -> CaptureSteering:
    """The route of one capture: ``talk_through`` or the bridge (any other ``mode``)."""
    if mode == "talk_through":
        return TalkThroughSteering(request, entry, options, fallback=fallback)
    return CaptureSteering(request, entry, options)
