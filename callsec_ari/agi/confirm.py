"""The session check over ARI: :class:`AriSessionCheck` fills the :class:`SessionCheck` port.

Why ARI and not AMI: ARI is always there (it is callsec's main door; ``[ami]`` is optional and
may be off), ``GET /channels/{uniqueid}`` is one indexed lookup whose answer carries everything
the check needs (``name``, ``caller.number`` and ``dialplan.app_name``), and the ARI client
already reconnects and reports errors by kind. AMI's ``Status`` action would need a filtered
event list, a second login with ``call`` read rights and a reply that can interleave with the
event stream.

With several Asterisk servers (``[ari] urls``) each is asked; the session checks out when one of
them has the channel (uniqueids are unique across servers in practice: they carry the time and,
with ``systemname``, the server). Fail closed: when no server has the channel and one of them
could not be asked (down, timeout, 5xx, wrong credentials), the answer is
``asterisk_unreachable`` and the session is refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from callsec_ari.agi.protocol import AgiRequest
from callsec_ari.agi.trust import (
    ASTERISK_UNREACHABLE,
    NO_SUCH_CHANNEL,
    NO_UNIQUEID,
    ChannelFacts,
    compare,
    safe_call_id,
)
from callsec_ari.ari.errors import AriError, AriNotFound
from callsec_ari.ari.operations import segment

log = logging.getLogger(__name__)


class RestClient(Protocol):
    """What the check needs of :class:`~callsec_ari.ari.client.AriClient`."""

    name: str

    async def request(self, method: str, path: str, *, params: Any = None,
                      json: Any = None) -> Any: ...


class AriSessionCheck:
    """Confirms a FastAGI session's channel and caller ID over ARI."""

    def __init__(self, clients: Sequence[RestClient]) -> None:
        self.clients = tuple(clients)

    async def confirm(self, request: AgiRequest) -> str | None:
        if not request.uniqueid:
            return NO_UNIQUEID
        found = await asyncio.gather(*(self._lookup(c, request) for c in self.clients))
        for facts in found:
            if isinstance(facts, ChannelFacts):
                return compare(request, facts)
        return ASTERISK_UNREACHABLE if ASTERISK_UNREACHABLE in found else NO_SUCH_CHANNEL

    async def _lookup(self, client: RestClient, request: AgiRequest) -> ChannelFacts | str:
        try:
            data = await client.request("GET", f"/channels/{segment(request.uniqueid)}")
        except AriNotFound:
            return NO_SUCH_CHANNEL
        except AriError as exc:
            log.error("cannot confirm the AGI session with %s: %s (%s); refusing it",
                      client.name, exc.error_id, exc.ari_status or "no answer",
                      extra={"call_id": safe_call_id(request)})
            return ASTERISK_UNREACHABLE
        if not isinstance(data, dict):
            log.error("cannot confirm the AGI session with %s: not a channel object; "
                      "refusing it", client.name, extra={"call_id": safe_call_id(request)})
            return ASTERISK_UNREACHABLE
        return facts_from_json(data)


def facts_from_json(data: dict[str, Any]) -> ChannelFacts:
    """ARI's channel object -> :class:`ChannelFacts` (missing parts read as empty)."""
    caller = data.get("caller")
    dialplan = data.get("dialplan")
    return ChannelFacts(
        name=str(data.get("name") or ""),
        caller_number=str(caller.get("number") or "") if isinstance(caller, dict) else "",
        application=str(dialplan.get("app_name") or "") if isinstance(dialplan, dict) else "",
    )
