"""Calls a previous callsec process left behind, found again on every (re)connect. A ``connect``
call lives in Asterisk in bridges named after it (:mod:`callsec_ari.connect.recovery` names them
and decides, purely, which calls are orphans; this module does the ARI side: listing, reading
the caller back, building the flow). When callsec dies (SIGKILL, OOM, a crash) the channels stay
in Stasis and the bridges stay up: a captured caller would be stranded with nobody listening to
the keys. On connect the adapter asks Asterisk which bridges and channels belong to its
application (``GET /applications/{app}``: Asterisk keeps them across the process's death, and
another callsec on another app name is never touched), and every call the dispatcher does not
know is adopted: a :class:`~callsec_ari.connect.flow.ConnectFlow` starts in CONNECTED and its
first event, :class:`~callsec_ari.connect.recovery.Recovered`, says what was found. The flow then
returns the caller to the agent (or plays ``agent-left`` and continues in the dialplan),
destroys the capture bridge, unmutes the recording and closes the capture record; later hang-ups
tear the call down as usual.

Adopting the call with the ordinary flow (rather than a one-off clean-up) keeps one owner for
every later event: the caller's or the agent's hang-up, and a new capture the agent asks for
after the lost one. Verification is not redone: its result and the customer reference are read
back from the channel variables the flow set (``CALLSEC_RESULT``, ``CALLSEC_CUSTOMER``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from callsec_ari.ari.client import AriClient
from callsec_ari.ari.errors import AriError, AriNotFound
from callsec_ari.ari.operations import segment
from callsec_ari.connect.flow import ConnectFlow
from callsec_ari.connect.recovery import Orphan, call_of, find_orphans
from callsec_ari.core.events import CallStarted
from callsec_ari.core.flow import Flow

FlowFactory = Callable[[str, CallStarted], Flow]

log = logging.getLogger(__name__)

@dataclass(frozen=True, kw_only=True)
class Adoption:
    """An orphaned call, ready to start in the dispatcher."""

    orphan: Orphan
    flow: ConnectFlow
    channel_name: str
    caller_number: str = field(repr=False)
    agent_endpoint: str
    verification: str


ParseArgs = Callable[[Sequence[str]], tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]]


async def orphans_of(client: AriClient, app: str, *,
                     known: Callable[[str], bool]) -> list[Orphan]:
    """Ask Asterisk what belongs to ``app`` and return the orphaned calls."""
    listing = await client.request("GET", f"/applications/{segment(app)}")
    if not isinstance(listing, Mapping):
        return []
    bridge_ids = {b for b in listing.get("bridge_ids") or () if isinstance(b, str)}
    channel_ids = {c for c in listing.get("channel_ids") or () if isinstance(c, str)}
    if not any(call_of(b) for b in bridge_ids):
        return []
    bridges = {b.id: b.channels for b in await client.list_bridges() if b.id in bridge_ids}
    return find_orphans(bridges, channel_ids, known=known)


async def _variable(client: AriClient, channel_id: str, name: str) -> str:
    try:
        return str(await client.get_variable(channel_id, name) or "")
    except AriNotFound:
        return ""


def stasis_args(raw_channel: Mapping[str, Any]) -> list[str]:
    """``dialplan.app_data`` of a channel in ``Stasis(app,connect,PJSIP/agent100,lang=de)``
    without the app name: ``["connect", "PJSIP/agent100", "lang=de"]``."""
    dialplan = raw_channel.get("dialplan")
    data = dialplan.get("app_data") if isinstance(dialplan, Mapping) else None
    if not isinstance(data, str):
        return []
    return [part.strip() for part in data.split(",")][1:]


async def _read_caller(client: AriClient, orphan: Orphan) -> tuple[Mapping[str, Any], str, str]:
    """The caller's channel as Asterisk shows it, its CALLSEC_RESULT and CALLSEC_CUSTOMER."""
    if not orphan.caller_present:
        return {}, "", ""
    try:
        found = await client.request("GET", f"/channels/{segment(orphan.call_id)}")
    except AriNotFound:
        return {}, "", ""
    if not isinstance(found, Mapping):
        return {}, "", ""
    return (found, await _variable(client, orphan.call_id, "CALLSEC_RESULT"),
            await _variable(client, orphan.call_id, "CALLSEC_CUSTOMER"))


async def adoption(client: AriClient, orphan: Orphan, flows: Mapping[str, FlowFactory],
                   parse: ParseArgs) -> Adoption | None:
    """Build the orphan's flow from its caller's channel, as the StasisStart did once;
    None when the configuration offers no connect flow."""
    raw, result, customer = await _read_caller(client, orphan)
    _name, positional, options = parse(["connect", *stasis_args(raw)[1:]])
    caller = raw.get("caller")
    number = str(caller.get("number") or "") if isinstance(caller, Mapping) else ""
    language = dict(options).get("lang") or str(raw.get("language") or "") or "en"
    factory = flows.get("connect")
    flow = factory(orphan.call_id, CallStarted(
        flow="connect", args=positional, options=options, language=language,
        caller_number=number)) if factory is not None else None
    if not isinstance(flow, ConnectFlow):
        return None
    flow.adopt(result=result, customer_ref=customer, language=language)
    return Adoption(orphan=orphan, flow=flow, channel_name=str(raw.get("name") or ""),
                    caller_number=number, agent_endpoint=positional[0] if positional else "",
                    verification=result)


async def recover(client: AriClient, app: str, *, known: Callable[[str], bool],
                  flows: Mapping[str, FlowFactory], parse: ParseArgs) -> list[Adoption]:
    """Every orphaned call of ``app``, ready to adopt; errors are logged, never raised."""
    try:
        orphans = await orphans_of(client, app, known=known)
    except AriError as exc:
        log.warning("cannot look for calls left by a previous callsec: %s", exc.error_id,
                    extra={"call_id": "-"})
        return []
    adopted: list[Adoption] = []
    for orphan in orphans:
        try:
            found = await adoption(client, orphan, flows, parse)
        except AriError as exc:
            log.warning("call left behind cannot be read back: %s", exc.error_id,
                        extra={"call_id": orphan.call_id})
            continue
        if found is not None:
            adopted.append(found)
    return adopted
