"""The capture slice's own events and commands (frozen, keyword-only). Values typed by the
caller travel only inside :class:`SensitiveDigits` holders, whose repr shows a count."""

from __future__ import annotations

from dataclasses import dataclass, field

from callsec_ari.capture.masking import SensitiveDigits
from callsec_ari.core.commands import Command
from callsec_ari.core.events import Event

#: Agent feature codes -> the fields they capture.
FIELD_SETS: dict[str, tuple[str, ...]] = {
    "card": ("card_number", "expiry", "cvv"),
    "bank": ("iban",),
    "id": ("national_id",),
}


# --- events ---------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class CaptureRequested(Event):
    capture_id: str
    fields: tuple[str, ...]
    requested_by: str = "agent"


@dataclass(frozen=True, kw_only=True)
class CaptureCancelled(Event):
    capture_id: str
    by: str = "agent"


@dataclass(frozen=True, kw_only=True)
class RecordingMuted(Event):
    mute: bool
    #: Recordings that were running and are now (un)muted; 0 when none ran.
    count: int = 0


@dataclass(frozen=True, kw_only=True)
class CaptureStored(Event):
    capture_id: str
    #: The payment-gateway token or the vault references, by field.
    refs: tuple[tuple[str, str], ...] = ()


# --- commands -------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class MuteRecording(Command):
    """Mute (or unmute) every recording of the leg: MixMonitor over AMI, ARI live recordings.
    Success comes back as :class:`RecordingMuted`; failure as ``CommandFailed``."""

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
