"""``Stasis(callsec,connect,<dial string>)``: verification per policy, then callsec dials the
agent and owns the bridge for the rest of the call (so captures are possible).

An unverified caller is never connected unless the policy says ``connect_unverified``; such a
caller goes back to the dialplan with ``CALLSEC_RESULT`` set, so the dialplan can route them.
Both legs join the bridge with ``absorb_dtmf=True``: keys the caller presses never reach the
agent's phone as DTMF, and the agent's feature codes never reach the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from callsec_ari.core import commands as c
from callsec_ari.core.events import (
    CallerHungUp,
    CommandFailed,
    DtmfReceived,
    Event,
    LegAnswered,
    LegGone,
    PlaybackFinished,
    Resynchronised,
    TimerExpired,
)
from callsec_ari.core.flow import ANY, TableFlow
from callsec_ari.verification.flow import VerificationFlow

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


class K(Enum):
    VERIFYING = auto()
    DIALLING = auto()
    CONNECTED = auto()
    ENDING = auto()
    DONE = auto()


class ConnectFlow(TableFlow[K]):
    FINAL_STATES = frozenset({K.DONE})
    IGNORED_EVERYWHERE = (PlaybackFinished, TimerExpired, DtmfReceived, Resynchronised, LegGone,
                          LegAnswered)

    def __init__(self, call_id: str, verification: VerificationFlow,
                 options: ConnectOptions) -> None:
        super().__init__(call_id, K.VERIFYING)
        self.verification = verification
        self.o = options
        self.bridge_id = f"callsec-call-{call_id}"
        self.result = ""
        self._ending_prompt = f"{call_id}-k-unavailable"

    def handle(self, event: Event) -> list[c.Command]:
        if self.state is not K.VERIFYING:
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
        if self.result not in ("verified", "skipped") and not self.o.connect_unverified:
            self.state = K.DONE
            return [c.ContinueDialplan(), c.Finish(result=self.result)]
        self.state = K.DIALLING
        ref = self.verification.customer.ref if self.verification.customer else ""
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
        return [c.ContinueDialplan(), c.Finish(result=self.result)]

    def _agent_left(self, event: LegGone) -> list[c.Command]:
        if event.leg != AGENT:
            return []
        self.state = K.DONE
        end: c.Command = (c.Hangup() if self.o.on_agent_hangup == "hangup"
                          else c.ContinueDialplan())
        return [c.DestroyBridge(bridge_id=self.bridge_id),
                c.Publish(topic="call", payload=(("stage", "agent_left"),)),
                end, c.Finish(result=self.result)]

    def _caller_left(self, event: CallerHungUp) -> list[c.Command]:
        self.state = K.DONE
        return [c.CancelTimer(name=DIAL_TIMER), c.HangupLeg(leg=AGENT),
                c.DestroyBridge(bridge_id=self.bridge_id),
                c.Publish(topic="call", payload=(("stage", "caller_left"),)),
                c.Finish(result=self.result)]

    def _failed(self, event: CommandFailed) -> list[c.Command]:
        if event.command in ("DialLeg", "AddToBridge", "CreateBridge"):
            return self._not_reached(event)
        return []

    TABLE = {
        (K.DIALLING, LegAnswered): _answered,
        (K.DIALLING, LegGone): _not_reached,
        (K.DIALLING, TimerExpired): _not_reached,
        (K.ENDING, PlaybackFinished): _ending_played,
        (K.CONNECTED, LegGone): _agent_left,
        (ANY, CallerHungUp): _caller_left,
        (ANY, CommandFailed): _failed,
    }
