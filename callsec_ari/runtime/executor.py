"""Routes each command either to a feature service or to the call's channel port.

Channel commands (answer, play, variables, bridges...) go to ``call.data["port"]``: the ARI
adapter for Stasis calls, the AGI session for FastAGI calls. Service commands (look up a
customer, send a code, store a capture...) go to the handler the feature slice registered, so
the same flows run behind ARI and behind FastAGI.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from callsec_ari.core.commands import Command
from callsec_ari.core.errors import CallsecError
from callsec_ari.core.events import Event
from callsec_ari.runtime.dispatcher import CallHandle

ServiceHandler = Callable[[CallHandle, Any], Awaitable[Sequence[Event]]]


class ChannelPort(Protocol):
    async def execute(self, call: CallHandle, command: Command) -> Sequence[Event]: ...


class CallExecutor:
    def __init__(self) -> None:
        self._services: dict[type[Command], ServiceHandler] = {}

    def register(self, command_type: type[Command], handler: ServiceHandler) -> None:
        if command_type in self._services:
            raise CallsecError(f"a handler for {command_type.__name__} is already registered")
        self._services[command_type] = handler

    async def execute(self, call: CallHandle, command: Command) -> Sequence[Event]:
        handler = self._services.get(type(command))
        if handler is not None:
            return await handler(call, command)
        port: ChannelPort = call.data["port"]
        return await port.execute(call, command)
