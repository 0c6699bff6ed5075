"""Commands out of the call flows: frozen, keyword-only dataclasses.

Adapters carry them out (ARI REST, AGI commands, services) and report the outcome back as
events; a failure comes back as :class:`~callsec_ari.core.events.CommandFailed`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Command:
    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass(frozen=True, kw_only=True)
class Answer(Command):
    pass


@dataclass(frozen=True, kw_only=True)
class Play(Command):
    """Play sound files (``sound:callsec/welcome``, ``digits:78``) to the caller."""

    playback_id: str
    media: tuple[str, ...]
    language: str = "en"
    leg: str = "caller"
    #: Set: play into this bridge instead (everyone in it hears; ``leg`` is ignored).
    bridge_id: str = ""


@dataclass(frozen=True, kw_only=True)
class StopPlayback(Command):
    playback_id: str


@dataclass(frozen=True, kw_only=True)
class StartTimer(Command):
    name: str
    seconds: float


@dataclass(frozen=True, kw_only=True)
class CancelTimer(Command):
    name: str


@dataclass(frozen=True, kw_only=True)
class SetVariables(Command):
    """Channel variables on the caller's channel. Values are never digits or numbers."""

    values: tuple[tuple[str, str], ...]


@dataclass(frozen=True, kw_only=True)
class ContinueDialplan(Command):
    """Leave callsec: back to the dialplan at the next priority (Stasis) / end of AGI."""


@dataclass(frozen=True, kw_only=True)
class Hangup(Command):
    reason: str = "normal"


@dataclass(frozen=True, kw_only=True)
class Finish(Command):
    """The flow is over; the dispatcher forgets the call after this command."""

    result: str


@dataclass(frozen=True, kw_only=True)
class Publish(Command):
    """A masked progress event for the agent desk (SSE) and metrics. Never digits."""

    topic: str
    payload: tuple[tuple[str, str | int | bool], ...] = ()


# --- legs and bridges (``connect`` calls and captures) -------------------------------------
# A leg is "caller", "agent" or a media leg; the channel port maps legs to channel ids.

@dataclass(frozen=True, kw_only=True)
class CreateBridge(Command):
    bridge_id: str
    name: str = ""


@dataclass(frozen=True, kw_only=True)
class AddToBridge(Command):
    bridge_id: str
    leg: str
    #: Deliberate on every join: True keeps this leg's DTMF from reaching the other members.
    absorb_dtmf: bool
    mute: bool = False


@dataclass(frozen=True, kw_only=True)
class RemoveFromBridge(Command):
    bridge_id: str
    leg: str


@dataclass(frozen=True, kw_only=True)
class DestroyBridge(Command):
    bridge_id: str


@dataclass(frozen=True, kw_only=True)
class StartMoh(Command):
    leg: str
    moh_class: str = ""


@dataclass(frozen=True, kw_only=True)
class StopMoh(Command):
    leg: str


@dataclass(frozen=True, kw_only=True)
class DialLeg(Command):
    """Originate ``endpoint`` (a dial string) as ``leg`` into callsec; its answer comes back
    as :class:`~callsec_ari.core.events.LegAnswered`, its failure as ``LegGone``."""

    leg: str
    endpoint: str
    caller_id: str = ""
    timeout: int = 30


@dataclass(frozen=True, kw_only=True)
class HangupLeg(Command):
    leg: str
    reason: str = "normal"


@dataclass(frozen=True, kw_only=True)
class CreateExternalMedia(Command):
    """A media channel ``leg`` (``UnicastRTP``) streaming RTP between Asterisk and
    ``host:port``; once it can join a bridge it comes back as
    :class:`~callsec_ari.core.events.ExternalMediaReady` with Asterisk's own RTP address."""

    leg: str
    host: str
    port: int
    format: str = "ulaw"
