"""The capture slice's own events and commands (frozen, keyword-only). Values typed by the
caller travel only inside :class:`SensitiveDigits` holders, whose repr shows a count."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from callsec_ari.core.commands import Command
from callsec_ari.core.digits import SensitiveDigits
from callsec_ari.core.events import Event

#: Agent feature codes -> the fields they capture.
FIELD_SETS: dict[str, tuple[str, ...]] = {
    "card": ("card_number", "expiry", "cvv"),
    "bank": ("iban",),
    "id": ("national_id",),
    "bank_us": ("routing_number", "account_number"),
}


# --- events ---------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class CaptureRequested(Event):
    capture_id: str
    fields: tuple[str, ...]
    requested_by: str = "agent"
    #: ``bridge`` | ``talk_through``; empty: the configured ``[capture] mode``.
    mode: str = ""
    #: Fields the caller may skip (``FieldControl`` action ``skip``).
    optional: tuple[str, ...] = ()
    #: Re-opening a just-finished capture for ``fields`` (a re-request, #18): the fields of the
    #: capture as first requested, and its stored masked summary. Empty: a new capture.
    reopen_fields: tuple[str, ...] = ()
    reopens: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = ()


@dataclass(frozen=True, kw_only=True)
class CaptureCancelled(Event):
    capture_id: str
    by: str = "agent"


#: ``FieldControl.action`` values.
FIELD_ACTIONS = ("rerequest", "cancel", "skip")


@dataclass(frozen=True, kw_only=True)
class FieldControl(Event):
    """Re-request, cancel or skip one field of a running capture (desk, API)."""

    capture_id: str
    field: str
    #: One of :data:`FIELD_ACTIONS`.
    action: str
    by: str = "agent"


@dataclass(frozen=True, kw_only=True)
class RecordingMuted(Event):
    mute: bool
    #: Recordings that were running and are now (un)muted; 0 when none ran.
    count: int = 0


@dataclass(frozen=True, kw_only=True)
class CaptureStored(Event):
    capture_id: str
    #: The payment-gateway token or the vault references, by field; ``("sealed", kind)`` per
    #: field sealed to the merchant's key.
    refs: tuple[tuple[str, str], ...] = ()

    @property
    def stored_as(self) -> str:
        """``sealed`` | ``token`` | ``vault`` (what the desk shows); empty: nothing stored."""
        kinds = {kind for kind, _ in self.refs}
        if "sealed" in kinds:
            return "sealed"
        return "token" if "gateway" in kinds else ("vault" if kinds else "")


@dataclass(frozen=True, kw_only=True)
class MediaOpened(Event):
    """A talk-through relay listens: Asterisk's media channels stream to ``host`` on these
    ports (``caller_port`` for the capture bridge's channel, ``agent_port`` for the agent's)."""

    capture_id: str
    host: str
    caller_port: int
    agent_port: int


@dataclass(frozen=True, kw_only=True)
class MediaConnected(Event):
    """The relay knows both media channels' RTP addresses: audio flows both ways."""

    capture_id: str


@dataclass(frozen=True, kw_only=True)
class MediaClosed(Event):
    """The relay is closed; ``evidence`` is its final count (frames relayed, flattened, tone
    frames that reached the agent side...), already signed and stored with the capture."""

    capture_id: str
    evidence: tuple[tuple[str, int | float | str], ...] = ()


# --- commands -------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class MuteRecording(Command):
    """Mute (or unmute) the MixMonitor recordings of the leg's channel, both directions (AMI
    ``MixMonitorMute``). callsec starts no ARI live recordings; recordings made any other way
    (another application's ARI live recording, ``Monitor``) are not muted (README, "Recordings
    during a capture"). Success comes back as :class:`RecordingMuted`; failure as
    ``CommandFailed``."""

    leg: str
    mute: bool


@dataclass(frozen=True, kw_only=True)
class StoreCapture(Command):
    """Hand the captured values to the sink (vault or payment gateway) and record the masked
    summary. The service wipes every holder after use, CVV first."""

    capture_id: str
    customer_ref: str
    values: tuple[tuple[str, SensitiveDigits], ...] = field(repr=False)
    masked: tuple[tuple[str, tuple[tuple[str, object], ...]], ...]
    fields: tuple[str, ...]
    requested_by: str = ""
    #: A re-opened capture: these fields' stored values are replaced (the others stay).
    replaces: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class RecordCapture(Command):
    """Record a capture that ended without values to store (invalid, cancelled, timeout...)."""

    capture_id: str
    customer_ref: str
    result: str
    fields: tuple[str, ...]
    masked: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = ()
    requested_by: str = ""
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class CloseOpenCaptures(Command):
    """Record every capture of this call that never finished (a previous callsec process
    died during it) as ``cancelled`` with ``reason``; nothing of its digits was ever kept."""

    reason: str


@dataclass(frozen=True, kw_only=True)
class OpenMedia(Command):
    """Open a talk-through relay (two UDP ports) for this capture -> :class:`MediaOpened`."""

    capture_id: str


@dataclass(frozen=True, kw_only=True)
class ConnectMedia(Command):
    """Tell the relay where Asterisk's media channels are -> :class:`MediaConnected`."""

    capture_id: str
    caller: tuple[str, int]
    agent: tuple[str, int]


@dataclass(frozen=True, kw_only=True)
class CloseMedia(Command):
    """Close the call's relay (idempotent), sign and store its evidence -> :class:`MediaClosed`
    (no event when no relay was open)."""

    capture_id: str


_LONG_DIGITS = re.compile(r"\d{13}")


def new_capture_id() -> str:
    """``CP-`` and 16 hex digits, never 13 decimal digits in a row: the audit trail stores
    such a target as a keyed marker (a card number is no id), and the capture's entries could
    no longer be found by its id (about one id in a hundred)."""
    while True:
        hex_id = secrets.token_hex(8)
        if not _LONG_DIGITS.search(hex_id):
            return "CP-" + hex_id


@dataclass(frozen=True)
class CaptureInfo:
    """A capture as the API shows it: masked only (brand, last 4, valid/invalid, the gateway
    token or vault refs), plus the endpoint of the call's agent for the owner check."""

    capture_id: str
    call_id: str
    agent_endpoint: str | None
    state: str
    masked: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"capture_id": self.capture_id, "call_id": self.call_id, "state": self.state,
                **dict(self.masked)}
