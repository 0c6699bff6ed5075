"""Talk-through media channels over ARI: ``POST /channels/externalMedia``.

Observed on the sandbox (Asterisk 22): the answer names a ``UnicastRTP/...`` channel whose
``channelvars`` hold ``UNICASTRTP_LOCAL_ADDRESS`` and ``UNICASTRTP_LOCAL_PORT`` (where Asterisk
sends from and expects our RTP); the channel enters the application (``StasisStart``, no
arguments) a moment *after* the answer, and ``addChannel`` before that answers 422 "Channel not in
Stasis application". So the adapter registers the channel id first (its StasisStart is then no
new call), and the command completes only once that StasisStart came.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any

from callsec_ari.ari.client import AriClient
from callsec_ari.ari.errors import AriError, AriNotFound
from callsec_ari.core import commands as c
from callsec_ari.core import events as e

#: How long a new media channel may take to enter the application.
MEDIA_START_TIMEOUT = 5.0


async def open_external_media(client: AriClient, *, app: str, channel_id: str,
                              command: c.CreateExternalMedia, started: asyncio.Event,
                              start_timeout: float = MEDIA_START_TIMEOUT,
                              ) -> e.ExternalMediaReady:
    """Create the media channel ``channel_id`` streaming to ``command.host:port`` (RTP over
    UDP, both directions) and wait until ``started`` (its StasisStart) is set."""
    host = f"[{command.host}]" if ":" in command.host else command.host
    channel = await client.external_media(
        app=app, external_host=f"{host}:{command.port}", format=command.format,
        channel_id=channel_id, direction="both")
    try:
        address, port = await _media_address(client, channel_id, channel.channelvars)
        async with asyncio.timeout(start_timeout):
            await started.wait()
    except (AriError, TimeoutError) as exc:
        await _ignore_gone(client.hangup(channel_id))
        if isinstance(exc, AriError):
            raise
        raise AriError(f"media channel {command.leg} never entered the application") from None
    return e.ExternalMediaReady(at=asyncio.get_running_loop().time(), leg=command.leg,
                                address=address, port=port)


async def _media_address(client: AriClient, channel_id: str,
                         variables: Mapping[str, str]) -> tuple[str, int]:
    """``UNICASTRTP_LOCAL_ADDRESS``/``_PORT``: from the answer (Asterisk 16.6+), else read."""
    address = variables.get("UNICASTRTP_LOCAL_ADDRESS") or \
        await client.get_variable(channel_id, "UNICASTRTP_LOCAL_ADDRESS")
    port = variables.get("UNICASTRTP_LOCAL_PORT") or \
        await client.get_variable(channel_id, "UNICASTRTP_LOCAL_PORT")
    if not address or not port.isdigit():
        raise AriError("a media channel without UNICASTRTP_LOCAL_ADDRESS/PORT")
    return address, int(port)


async def _ignore_gone(request: Awaitable[Any]) -> None:
    try:
        await request
    except AriNotFound:
        pass
