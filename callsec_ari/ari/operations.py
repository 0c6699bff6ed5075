"""Typed ARI REST helpers: each method is one REST call, with the parameter names of the swagger
files shipped with Asterisk 22 (``channels.json``, ``bridges.json``,
``playbacks.json``). :class:`~callsec_ari.ari.client.AriClient` provides
:meth:`AriOperations.request`; errors are the :mod:`callsec_ari.ari.errors` tree.

Values that may hold digits (DTMF, variable values, caller ids) travel only as query values or
JSON bodies, which the client never puts into messages or logs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from callsec_ari.ari.errors import AriProtocolError, AriServerError
from callsec_ari.ari.resources import (
    Bridge,
    Channel,
    Playback,
    parse_bridge,
    parse_channel,
    parse_playback,
)

log = logging.getLogger(__name__)
QueryValue = str | int | float | bool | None
Params = Mapping[str, QueryValue]
#: A StopPlayback answered 500 is tried again this often, this far apart.
STOP_RETRIES, STOP_RETRY_SECONDS = 3, 0.05


def segment(value: str) -> str:
    """One path segment (an id or a name), percent-encoded; ``/`` included."""
    if not value:
        raise ValueError("an ARI resource id or name must not be empty")
    return quote(value, safe="")


def _media_list(media: Sequence[str]) -> str:
    items = (media,) if isinstance(media, str) else tuple(media)
    if not items or any(not item or "," in item for item in items):
        raise ValueError("media must be one or more non-empty URIs without commas")
    return ",".join(items)  # ARI splits allowMultiple query values on commas


def _app_args(args: str | Sequence[str] | None) -> str | None:
    if args is None or isinstance(args, str):
        return args
    return ",".join(args)


def _variables_body(variables: Mapping[str, str] | None) -> dict[str, Any] | None:
    return {"variables": dict(variables)} if variables else None


def _mapping(result: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(result, Mapping):
        raise AriProtocolError(f"ARI answered a {what} request without a JSON object")
    return result


def _list(result: Any, what: str) -> list[Mapping[str, Any]]:
    if not isinstance(result, list):
        raise AriProtocolError(f"ARI answered a {what} request without a JSON list")
    return [item for item in result if isinstance(item, Mapping)]


class AriOperations:
    """Mixin of one-call helpers on top of :meth:`request`."""

    async def request(
        self, method: str, path: str, *, params: Params | None = None, json: Any = None
    ) -> Any:
        raise NotImplementedError

    # -- channels ---------------------------------------------------------------------------
    async def list_channels(self) -> list[Channel]:
        return [parse_channel(c) for c in _list(await self.request("GET", "/channels"), "channels")]

    async def answer(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{segment(channel_id)}/answer")

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        await self.request("DELETE", f"/channels/{segment(channel_id)}", params={"reason": reason})

    async def continue_in_dialplan(
        self,
        channel_id: str,
        context: str | None = None,
        extension: str | None = None,
        priority: int | None = None,
        label: str | None = None,
    ) -> None:
        params: Params = {"context": context, "extension": extension, "priority": priority,
                          "label": label}
        await self.request("POST", f"/channels/{segment(channel_id)}/continue", params=params)

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        await self.request("POST", f"/channels/{segment(channel_id)}/variable",
                           params={"variable": name, "value": value})

    async def get_variable(self, channel_id: str, name: str) -> str:
        result = await self.request("GET", f"/channels/{segment(channel_id)}/variable",
                                    params={"variable": name})
        value = _mapping(result, "variable").get("value")
        return value if isinstance(value, str) else ""

    async def play(self, channel_id: str, media: Sequence[str], *, playback_id: str | None = None,
                   lang: str | None = None) -> Playback:
        result = await self.request(
            "POST", f"/channels/{segment(channel_id)}/play",
            params={"media": _media_list(media), "lang": lang, "playbackId": playback_id})
        return parse_playback(_mapping(result, "play"))

    async def start_moh(self, channel_id: str, moh_class: str | None = None) -> None:
        await self.request("POST", f"/channels/{segment(channel_id)}/moh",
                           params={"mohClass": moh_class})

    async def stop_moh(self, channel_id: str) -> None:
        await self.request("DELETE", f"/channels/{segment(channel_id)}/moh")

    async def originate(
        self, endpoint: str, *, app: str, app_args: str | Sequence[str] | None = None,
        caller_id: str | None = None,
        timeout: int = 30,  # noqa: ASYNC109 - Asterisk's ring timeout, sent as a query value
        channel_id: str | None = None,
        variables: Mapping[str, str] | None = None,
        originator: str | None = None,
    ) -> Channel:
        """``originator``: the channel this call is made for; the new channel takes its
        formats (else a Local channel may pick a high-rate codec and Asterisk resamples every
        prompt) and its linkedid."""
        params: Params = {"endpoint": endpoint, "app": app, "appArgs": _app_args(app_args),
                          "callerId": caller_id, "timeout": timeout, "channelId": channel_id,
                          "originator": originator}
        result = await self.request("POST", "/channels", params=params,
                                    json=_variables_body(variables))
        return parse_channel(_mapping(result, "originate"))


    async def external_media(
        self, *, app: str, external_host: str, format: str = "ulaw",
        channel_id: str | None = None, encapsulation: str = "rtp", transport: str = "udp",
        direction: str | None = None,
    ) -> Channel:
        params: Params = {"app": app, "external_host": external_host, "format": format,
                          "channelId": channel_id, "encapsulation": encapsulation,
                          "transport": transport, "direction": direction}
        result = await self.request("POST", "/channels/externalMedia", params=params)
        return parse_channel(_mapping(result, "external media"))

    # -- bridges ----------------------------------------------------------------------------
    async def create_bridge(self, bridge_id: str | None = None, *, type: str = "mixing,dtmf_events",
                            name: str | None = None) -> Bridge:
        result = await self.request("POST", "/bridges",
                                    params={"type": type, "bridgeId": bridge_id, "name": name})
        return parse_bridge(_mapping(result, "create bridge"))

    async def list_bridges(self) -> list[Bridge]:
        return [parse_bridge(b) for b in _list(await self.request("GET", "/bridges"), "bridges")]

    async def destroy_bridge(self, bridge_id: str) -> None:
        await self.request("DELETE", f"/bridges/{segment(bridge_id)}")

    async def add_channel(
        self, bridge_id: str, channel_id: str, *, absorb_dtmf: bool, mute: bool = False,
        role: str | None = None, inhibit_connected_line_updates: bool | None = None,
    ) -> None:
        """``absorb_dtmf`` has no default on purpose: every caller decides whether digits the
        channel sends may reach the other bridge members. It is always sent explicitly."""
        params: Params = {"channel": channel_id, "absorbDTMF": bool(absorb_dtmf),
                          "mute": bool(mute), "role": role,
                          "inhibitConnectedLineUpdates": inhibit_connected_line_updates}
        await self.request("POST", f"/bridges/{segment(bridge_id)}/addChannel", params=params)

    async def remove_channel(self, bridge_id: str, channel_id: str) -> None:
        await self.request("POST", f"/bridges/{segment(bridge_id)}/removeChannel",
                           params={"channel": channel_id})


    async def play_bridge(self, bridge_id: str, media: Sequence[str], *,
                          playback_id: str | None = None, lang: str | None = None) -> Playback:
        result = await self.request(
            "POST", f"/bridges/{segment(bridge_id)}/play",
            params={"media": _media_list(media), "lang": lang, "playbackId": playback_id})
        return parse_playback(_mapping(result, "bridge play"))

    # -- playbacks ---------------------------------------------------------------------------
    async def stop_playback(self, playback_id: str) -> None:
        """Stop a playback (404 when it is gone). Asterisk answers 500 when the stop lands
        while a playback of several media moves from one to the next
        (``res_stasis_playback.c``); the next media then plays to its end and holds every
        later command on the channel (its control queue): a caller who keyed while
        ``welcome`` ended heard all of ``code-sent-sms`` and the next ``SetVariables`` timed
        out after 5 s (``make bench`` lost one call of 100 so, #17). Tried again shortly."""
        for attempt in range(STOP_RETRIES + 1):
            try:
                await self.request("DELETE", f"/playbacks/{segment(playback_id)}")
                return
            except AriServerError:
                if attempt == STOP_RETRIES:
                    raise
                log.info("stopping a playback answered 500; trying again (%d)", attempt + 1)
            await asyncio.sleep(STOP_RETRY_SECONDS)
