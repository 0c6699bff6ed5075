"""Callers a previous callsec process left in Stasis outside every callsec bridge.

A caller in the middle of a verification (or a self-service capture, a probe) sits in Stasis in
no bridge: :mod:`callsec_ari.ari.recovery`, which finds calls by their bridges, cannot see it, and
once the process that ran its flow is gone nobody listens to its keys. On every (re)connect,
after the bridged calls were adopted, the adapter asks Asterisk for its application's channels
and sorts those no running call owns (:func:`find_stranded`, pure):

- a **caller** (``Stasis(<app>,<flow>,...)`` in its dialplan, a flow callsec offers, in no
  bridge) hears an apology (``verification-restarted``: "there was a technical problem, let us
  start again") and its flow starts from the beginning, as if it had just arrived: a fresh
  ``CallStarted`` from its Stasis arguments, caller number and language, through the adapter's
  own ``StasisStart`` path. What the dead flow had collected died with it; the verification
  service closes the dead attempt's open record (``error``, reason ``interrupted``) at the new
  attempt's first look-up.
- a **leg** (``<call id>-agent``, ``Stasis(<app>,leg,...)``) or a **media channel**
  (``<call id>-media-*``) is never a caller: it is left alone while its call runs or was
  adopted from its bridges, and hung up when its call is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from callsec_ari.ari import models as m
from callsec_ari.ari.client import AriClient
from callsec_ari.ari.errors import AriError, AriNotFound
from callsec_ari.ari.operations import segment
from callsec_ari.ari.recovery import stasis_args
from callsec_ari.connect.recovery import AGENT_SUFFIX, call_of
from callsec_ari.logs import call_logger

log = logging.getLogger(__name__)

MEDIA_MARK = "-media-"
APOLOGY = "sound:callsec/verification-restarted"


@dataclass(frozen=True, kw_only=True)
class Stranded:
    """What :func:`find_stranded` found: callers to start again, channels to hang up."""

    restart: tuple[Mapping[str, Any], ...] = ()
    hang_up: tuple[str, ...] = ()


def call_of_leg(channel_id: str, args: Sequence[str]) -> str | None:
    """The call a leg or media channel belongs to; None for anything else (a caller)."""
    if args[:1] == ["leg"] and len(args) >= 2 and args[1]:
        return args[1]
    if channel_id.endswith(AGENT_SUFFIX) and len(channel_id) > len(AGENT_SUFFIX):
        return channel_id[:-len(AGENT_SUFFIX)]
    call, mark, _rest = channel_id.partition(MEDIA_MARK)
    return call if mark and call else None


def in_flow(raw: Mapping[str, Any], app: str, flows: Collection[str]) -> bool:
    """The channel runs ``Stasis(app, <one of flows>, ...)`` in its dialplan."""
    dialplan = raw.get("dialplan")
    if not isinstance(dialplan, Mapping) or str(dialplan.get("app_name") or "").lower() \
            != "stasis":
        return False
    data = dialplan.get("app_data")
    if not isinstance(data, str) or data.split(",", 1)[0].strip() != app:
        return False
    args = stasis_args(raw)
    return bool(args) and args[0].lower() in flows


def _bridged_calls(bridges: Sequence[m.Bridge]) -> set[str]:
    return {call for bridge in bridges if (call := call_of(bridge.id)) is not None}


def find_stranded(channels: Sequence[Mapping[str, Any]], bridges: Sequence[m.Bridge], *,
                  app: str, flows: Collection[str], known: Callable[[str], bool]) -> Stranded:
    """Pure: the app's raw ``channels`` and ``bridges`` -> callers to restart and legs to end.

    ``known(call_id)``: a flow of this process runs the call (adopted calls included)."""
    in_bridges = {channel for bridge in bridges for channel in bridge.channels}
    bridged_calls = _bridged_calls(bridges)
    restart: list[Mapping[str, Any]] = []
    hang_up: list[str] = []
    for raw in sorted(channels, key=lambda r: str(r.get("id") or "")):
        channel_id = raw.get("id")
        if not isinstance(channel_id, str) or not channel_id:
            continue
        leg_of = call_of_leg(channel_id, stasis_args(raw))
        if leg_of is not None:
            if not known(leg_of) and leg_of not in bridged_calls:
                hang_up.append(channel_id)
        elif not (known(channel_id) or channel_id in in_bridges or channel_id in bridged_calls) \
                and in_flow(raw, app, flows):
            restart.append(raw)
    return Stranded(restart=tuple(restart), hang_up=tuple(hang_up))


async def stranded_of(client: AriClient, app: str, *, flows: Collection[str],
                      known: Callable[[str], bool]) -> Stranded:
    """Ask Asterisk what belongs to ``app`` and sort it with :func:`find_stranded`."""
    listing = await client.request("GET", f"/applications/{segment(app)}")
    if not isinstance(listing, Mapping):
        return Stranded()
    channel_ids = {c for c in listing.get("channel_ids") or () if isinstance(c, str)}
    bridge_ids = {b for b in listing.get("bridge_ids") or () if isinstance(b, str)}
    if not channel_ids:
        return Stranded()
    everything = await client.request("GET", "/channels")
    channels = [raw for raw in everything if isinstance(raw, Mapping)
                and raw.get("id") in channel_ids] if isinstance(everything, list) else []
    bridges = [b for b in await client.list_bridges() if b.id in bridge_ids] \
        if bridge_ids else []
    return find_stranded(channels, bridges, app=app, flows=flows, known=known)


async def recover_stranded(client: AriClient, app: str, *, flows: Collection[str],
                           known: Callable[[str], bool],
                           start: Callable[[m.StasisStart], None]) -> Stranded:
    """Hang up the legs whose call is gone, then apologise to every stranded caller and hand
    it to ``start`` (the adapter's ``StasisStart`` path). Errors are logged, never raised."""
    try:
        found = await stranded_of(client, app, flows=flows, known=known)
    except AriError as exc:
        log.warning("cannot look for callers left by a previous callsec: %s", exc.error_id,
                    extra={"call_id": "-"})
        return Stranded()
    for channel_id in found.hang_up:
        call_logger(log, channel_id).warning("hanging up a leg whose call is gone")
        try:
            await client.hangup(channel_id)
        except AriNotFound:
            pass
        except AriError as exc:
            call_logger(log, channel_id).warning("cannot hang up the leg: %s", exc.error_id)
    await asyncio.gather(*(_restart(client, raw, start) for raw in found.restart))
    return found


async def _restart(client: AriClient, raw: Mapping[str, Any],
                   start: Callable[[m.StasisStart], None]) -> None:
    try:
        event = m.StasisStart(channel=m.parse_channel(raw), args=tuple(stasis_args(raw)))
    except AriError as exc:
        log.warning("a stranded channel cannot be read: %s", exc.error_id, extra={"call_id": "-"})
        return
    channel = event.channel
    clog = call_logger(log, channel.id)
    language = next((value.strip() for key, sep, value in (a.partition("=") for a in event.args)
                     if sep and key.strip().lower() == "lang"), "") or channel.language or "en"
    clog.warning("restarting flow %s: the call was left mid-flow by a previous callsec",
                 event.args[0] if event.args else "-")
    playback = f"{channel.id}-restarted"
    try:
        await client.play(channel.id, [APOLOGY], playback_id=playback, lang=language)
        await _played(client, playback)
    except AriNotFound:
        clog.info("the stranded caller hung up meanwhile")
        return
    except AriError as exc:
        clog.warning("apology prompt failed: %s; starting again anyway", exc.error_id)
    start(event)


async def _played(client: AriClient, playback_id: str, limit: float = 10.0) -> None:
    """Until the apology has played: Asterisk runs a channel's commands one after the other,
    so the flow's first command would otherwise wait behind the whole prompt (4.6 s, close to
    ``[ari] request_timeout_seconds``) and fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        try:
            await client.request("GET", f"/playbacks/{segment(playback_id)}")
        except AriNotFound:
            return
        await asyncio.sleep(0.2)
