"""Routes each command either to a feature service or to the call's channel port.

Channel commands (answer, play, variables, bridges...) go to ``call.context.port``: the ARI
adapter for Stasis calls, the AGI session for FastAGI calls. Service commands (look up a
customer, send a code, store a capture...) go to the handler the feature slice registered, so
the same flows run behind ARI and behind FastAGI. A ``Play`` first passes the
:class:`~callsec_ari.runtime.prompts.PromptBook` (per-language overrides, English fallback).
"""

from __future__ import annotations

from collections.abc import Sequence

from callsec_ari.core.commands import Command, Play
from callsec_ari.core.errors import CallsecError
from callsec_ari.core.events import Event
from callsec_ari.core.ports import CallHandle, ServiceHandler
from callsec_ari.runtime.prompts import PromptBook


class CallExecutor:
    def __init__(self, prompts: PromptBook | None = None) -> None:
        self._services: dict[type[Command], ServiceHandler] = {}
        self.prompts = prompts or PromptBook()

    def register(self, command_type: type[Command], handler: ServiceHandler) -> None:
        if command_type in self._services:
            raise CallsecError(f"a handler for {command_type.__name__} is already registered")
        self._services[command_type] = handler

    async def execute(self, call: CallHandle, command: Command) -> Sequence[Event]:
        handler = self._services.get(type(command))
        if handler is not None:
            return await handler(call, command)
        port = call.context.port
        if port is None:
            raise CallsecError(f"call {call.call_id} has no channel port")
        if isinstance(command, Play):
            command, missing = self.prompts.resolve(command)
            for name in missing:
                call.log.warning("prompt %s is missing in language %s: English played", name,
                                 command.language)
        return await port.execute(call, command)
