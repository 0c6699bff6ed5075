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
