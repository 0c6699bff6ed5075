"""What the web layer needs from the rest of callsec, as small protocols.

The capture feature plugs in later through :class:`CaptureService` (``WebDeps.captures``;
``None`` answers 503 ``capture_unavailable``). Calls come from the dispatcher
(``core.ports.CallDirectory``), ARI health from the adapters (:class:`AriLink`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry

from callsec_ari.access.auth import Auth
from callsec_ari.access.users import UserStore
from callsec_ari.capture.protocol import CaptureInfo
from callsec_ari.config import WebSettings
from callsec_ari.core.ports import CallDirectory, CallHandle
from callsec_ari.runtime.bus import EventBus
from callsec_ari.store.audit import AuditLog
from callsec_ari.store.db import Database
from callsec_ari.verification.delivery.base import LatencyStats
from callsec_ari.web.cluster import ClusterView, Forwarder
from callsec_ari.web.customer import NameCache

if TYPE_CHECKING:
    from callsec_ari.web.approvals import ApprovalService

STATIC_DIR = Path(__file__).with_name("static")

#: Fields an agent may ask a caller to key in (CONTRACT: ``POST .../captures``).
CAPTURE_FIELDS = ("card_number", "expiry", "cvv", "postal_code", "iban", "national_id",
                  "routing_number", "account_number")
#: Capture modes a request may name (optional ``mode``; absent: ``[capture] mode``).
CAPTURE_MODES = ("bridge", "talk_through")


class _Reconnects(Protocol):
    @property
    def reconnects(self) -> int: ...


class AriLink(Protocol):
    """One Asterisk server's adapter (``AriAdapter``)."""

    @property
    def server(self) -> str: ...

    @property
    def connected(self) -> asyncio.Event: ...

    @property
    def client(self) -> _Reconnects: ...


class CaptureService(Protocol):
    """Implemented by the capture feature; every method raises ``CallsecError`` subclasses."""

    async def request(self, call: CallHandle, fields: Sequence[str], *, actor: str,
                      mode: str = "", optional: Sequence[str] = ()) -> str:
        """Start a capture on ``call`` (``mode``: empty for the configured one; ``optional``:
        fields the agent or caller may skip); its id."""
        ...

    async def cancel(self, call: CallHandle, capture_id: str, *, actor: str) -> None: ...

    async def control_field(self, call: CallHandle, capture_id: str, field: str, action: str,
                            *, actor: str) -> None:
        """Re-request, cancel or skip one field of the running capture ``capture_id``."""
        ...

    async def get(self, capture_id: str) -> CaptureInfo: ...

    async def reveal(self, capture_id: str, *, kinds: frozenset[str], actor: str,
                     reason: str) -> dict[str, str]:
        """Clear values of the capture's vaulted fields whose kind is in ``kinds``."""
        ...


@dataclass
class WebDeps:
    web: WebSettings
    auth: Auth
    users: UserStore
    audit: AuditLog
    db: Database
    calls: CallDirectory
    bus: EventBus
    ari: Sequence[AriLink] = ()
    latency: LatencyStats | None = None
    #: Set by the capture feature (may be assigned after the web app is built).
    captures: CaptureService | None = None
    #: Set by the approval feature (``callsec_ari/approval``), like ``captures``.
    approvals: ApprovalService | None = None
    #: The verified customer's display name for the handling agent (``web/customer.py``).
    customer_names: NameCache | None = None
    static_dir: Path = STATIC_DIR
    sse_heartbeat_seconds: float = 15.0
    #: What ``/metrics`` renders (the application's registry; None: a new one of its own).
    registry: CollectorRegistry | None = None
    #: The other nodes' calls (``runtime.cluster.ClusterNode``) and the forwarding of
    #: commands to their owners (``web/cluster.py``); None: a single node.
    cluster: ClusterView | None = None
    forwarder: Forwarder | None = None

    def __post_init__(self) -> None:
        from callsec_ari.web.metrics import StateCollector  # it reads these deps

        if self.registry is None:
            self.registry = CollectorRegistry()
        self.registry.register(StateCollector(self))
