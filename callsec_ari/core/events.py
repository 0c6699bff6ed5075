"""Events into the call flows: frozen, keyword-only dataclasses (model: h11's ``_events.py``).

Events are facts. Adapters (ARI, FastAGI, HTTP) and services produce them; flows consume them.
Fields that may hold a secret (typed digits, codes) are excluded from ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from callsec_ari.core.commands import Command


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base class. ``at`` is a monotonic timestamp in seconds, set by the producer."""

    at: float = 0.0


# --- call lifecycle (adapters) ------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class CallStarted(Event):
    """The caller entered callsec (``Stasis(callsec,...)`` or an AGI script)."""

    flow: str
    args: tuple[str, ...] = ()
    options: tuple[tuple[str, str], ...] = ()
    language: str = "en"
    #: The caller ID as presented; personal data, kept in memory only.
    caller_number: str = field(default="", repr=False)
    #: STIR/SHAKEN verification result as reported by PJSIP (``STIR_SHAKEN`` function), if any.
    attestation: str = ""

    def option(self, name: str, default: str = "") -> str:
        return dict(self.options).get(name, default)


@dataclass(frozen=True, kw_only=True)
class DtmfReceived(Event):
    """One DTMF END on a leg. ``digit`` is secret: never logged (repr hides it)."""

    digit: str = field(repr=False)
    duration_ms: int = 0
    leg: str = "caller"


@dataclass(frozen=True, kw_only=True)
class PlaybackFinished(Event):
    playback_id: str


@dataclass(frozen=True, kw_only=True)
class TimerExpired(Event):
    name: str


@dataclass(frozen=True, kw_only=True)
class CallerHungUp(Event):
    pass


@dataclass(frozen=True, kw_only=True)
class CommandFailed(Event):
    """A command could not be carried out (channel gone, Asterisk down, database down...);
    ``command`` is the failed command's class, ``error_id`` an :class:`ErrorId` value."""

    command: type[Command]
    error_id: str
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class Resynchronised(Event):
    """The ARI connection came back; the adapter checked the call's channels still exist."""

    caller_present: bool = True


@dataclass(frozen=True, kw_only=True)
class LegAnswered(Event):
    """A leg callsec dialled (``DialLeg``) answered and is under callsec's control."""

    leg: str


@dataclass(frozen=True, kw_only=True)
class LegGone(Event):
    """A leg other than the caller hung up, or never answered (``cause`` from Asterisk)."""

    leg: str
    cause: str = ""


@dataclass(frozen=True, kw_only=True)
class ExternalMediaReady(Event):
    """A media channel (``CreateExternalMedia``) is up and in callsec's application;
    ``address:port`` is where Asterisk sends its RTP from and expects ours."""

    leg: str
    address: str
    port: int


@dataclass(frozen=True, kw_only=True)
class ApprovalChecked(Event):
    """An approval code's check (approval's service; a link's answer comes from verification's
    confirmation service): ``ok`` | ``wrong`` | ``expired`` | ``used`` | ``exhausted`` |
    ``locked`` | ``terms_changed`` | ``denied`` (the customer said "this is not me")."""

    approval_id: str
    result: str
