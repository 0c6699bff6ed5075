"""Ports: what feature slices and adapters know of a running call and of the runtime.

A slice gets a :class:`CallHandle` (the call id, its flow, its typed :class:`CallContext`),
registers its service commands on a :class:`ServiceRegistry` and posts events through a
:class:`CallDirectory`; the runtime (``runtime/dispatcher.py``, ``runtime/executor.py``)
implements them and ``app.py`` wires them. No asyncio here: the runtime's own per-call state
(event queue, timers, worker task) lives in ``runtime.dispatcher.ActiveCall``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from callsec_ari.core.commands import Command
from callsec_ari.core.events import Event
from callsec_ari.core.flow import Flow


@dataclass(eq=False)
class CallContext:
    """What the adapter and the slices learned about one call (never a digit or a number:
    the caller is kept masked)."""

    #: The adapter that carries out channel commands (ARI adapter or AGI adapter).
    port: ChannelPort | None = None
    #: The port's own per-call state (the AGI adapter's session record).
    port_state: object = None
    channel_id: str | None = None
    channel_name: str | None = None
    #: ``logs.mask_phone`` of the caller's number.
    caller_masked: str | None = None
    server: str | None = None
    flow: str | None = None
    #: Dial string of each leg callsec originated (``DialLeg``): ``{"agent": "PJSIP/agent100"}``.
    endpoints: dict[str, str] = field(default_factory=dict)
    #: Live progress for the desk (``runtime.bus``): the flow stage last published.
    stage: str | None = None
    customer_ref: str | None = None
    verification_id: str | None = None
    verification_opened: bool = False
    #: The verification's result ("verified", "failed", ...), once there is one.
    verification: str | None = None
    capture: str | None = None

    @property
    def agent_endpoint(self) -> str | None:
        """The agent's endpoint: it owns the call (``access.roles`` scope ``own``)."""
        return self.endpoints.get("agent")


@dataclass(eq=False)
class CallHandle:
    """One running call as slices and ports see it."""

    call_id: str
    flow: Flow
    #: ``logs.call_logger``: every line carries the call id.
    log: logging.LoggerAdapter[logging.Logger]
    context: CallContext = field(default_factory=CallContext)
    result: str = ""
    started_at: float = 0.0
    #: The event the worker is handling now (commands it sends are caused by it).
    trigger: Event | None = None


class ChannelPort(Protocol):
    """Carries out a call's channel commands (answer, play, bridges...)."""

    async def execute(self, call: CallHandle, command: Command) -> Sequence[Event]: ...


#: A slice's handler of one service command type.
ServiceHandler = Callable[[CallHandle, Any], Awaitable[Sequence[Event]]]


class ServiceRegistry(Protocol):
    """Where a slice registers the service commands it handles (``runtime.executor``)."""

    def register(self, command_type: type[Command], handler: ServiceHandler) -> None: ...


class Publisher(Protocol):
    """Masked live progress for the desk (``runtime.bus.EventBus``)."""

    def publish(self, call_id: str, topic: str, payload: dict[str, Any]) -> object: ...


class CallDirectory(Protocol):
    """The running calls (``runtime.dispatcher``): look one up, post it an event."""

    def get(self, call_id: str) -> CallHandle | None: ...

    def post(self, call_id: str, event: Event) -> bool: ...

    def __iter__(self) -> Iterator[CallHandle]: ...
