"""Typed ARI events, parsed from the JSON frames of Asterisk's events websocket (type names and
fields as in the swagger file ``events.json`` shipped with Asterisk 22), plus the two
connection-state events the client itself produces (:class:`Connected`, :class:`Disconnected`).
The resources (:class:`Channel`, :class:`Bridge`, :class:`Playback`) live in
:mod:`callsec_ari.ari.resources` and are re-exported here.

Malformed input policy: :func:`parse_event` never raises on an unknown type
(-> :class:`UnknownEvent`) or on a missing optional field (-> ``None``/``""``/0/empty). It raises
:class:`~callsec_ari.ari.errors.AriProtocolError` when the input is not an ARI event at all: not a
JSON object, no string ``type``, or a known type without the object it requires (a ``StasisStart``
without ``channel``, a channel without ``id``). The message names the type and the field, never a
value. The client logs such a frame at WARNING (without its body) and skips it.

Fields that can hold a phone number, a dialled number or typed digits (caller/connected line,
dialplan extension, channel variables, DTMF digits, variable values, dial strings, Stasis
arguments, the raw JSON) are left out of ``repr``, so logging an event shows none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeVar

from callsec_ari.ari.errors import AriProtocolError
from callsec_ari.ari.resources import (
    Bridge,
    Channel,
    Playback,
    empty_mapping,
    get_bool,
    get_datetime,
    get_int,
    get_opt_str,
    get_str,
    parse_bridge,
    parse_channel,
    parse_playback,
)

__all__ = [
    "KNOWN_EVENT_TYPES",
    "AriEvent",
    "Bridge",
    "Channel",
    "ChannelDestroyed",
    "ChannelDtmfReceived",
    "ChannelHangupRequest",
    "Connected",
    "Disconnected",
    "Playback",
    "PlaybackFinished",
    "StasisEnd",
    "StasisStart",
    "UnknownEvent",
    "parse_bridge",
    "parse_channel",
    "parse_event",
    "parse_playback",
]

_T = TypeVar("_T")


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, kw_only=True)
class AriEvent:
    """Fields every ARI event has (``Message`` + ``Event`` in events.json)."""

    type: str
    application: str = ""
    timestamp: datetime | None = None
    asterisk_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=empty_mapping, repr=False, compare=False)


@dataclass(frozen=True, kw_only=True)
class Connected(AriEvent):
    """Produced by the client: the events websocket is (again) connected."""

    type: str = "Connected"
    server: str
    reconnect: bool


@dataclass(frozen=True, kw_only=True)
class Disconnected(AriEvent):
    """Produced by the client: the events websocket dropped or could not connect."""

    type: str = "Disconnected"
    server: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class UnknownEvent(AriEvent):
    """An event type this module does not model; see ``raw``."""


@dataclass(frozen=True, kw_only=True)
class StasisStart(AriEvent):
    type: str = "StasisStart"
    channel: Channel
    args: tuple[str, ...] = field(default=(), repr=False)
    replace_channel: Channel | None = None


@dataclass(frozen=True, kw_only=True)
class StasisEnd(AriEvent):
    type: str = "StasisEnd"
    channel: Channel


@dataclass(frozen=True, kw_only=True)
class ChannelDtmfReceived(AriEvent):
    type: str = "ChannelDtmfReceived"
    channel: Channel
    digit: str = field(repr=False)
    duration_ms: int = 0


@dataclass(frozen=True, kw_only=True)
class ChannelHangupRequest(AriEvent):
    type: str = "ChannelHangupRequest"
    channel: Channel
    cause: int | None = None
    soft: bool = False


@dataclass(frozen=True, kw_only=True)
class ChannelDestroyed(AriEvent):
    type: str = "ChannelDestroyed"
    channel: Channel
    cause: int | None = None
    cause_txt: str = ""


@dataclass(frozen=True, kw_only=True)
class PlaybackFinished(AriEvent):
    type: str = "PlaybackFinished"
    playback: Playback


# --------------------------------------------------------------------------- parsing


def _required(data: Mapping[str, Any], key: str, parse: Callable[[Mapping[str, Any]], _T]) -> _T:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise AriProtocolError(f"ARI {get_str(data, 'type')} event without a '{key}' object")
    return parse(value)


def _optional(
    data: Mapping[str, Any], key: str, parse: Callable[[Mapping[str, Any]], _T]
) -> _T | None:
    value = data.get(key)
    return parse(value) if isinstance(value, Mapping) else None


_Fields = dict[str, Any]


def _channel_only(d: Mapping[str, Any]) -> _Fields:
    return {"channel": _required(d, "channel", parse_channel)}


def _playback_only(d: Mapping[str, Any]) -> _Fields:
    return {"playback": _required(d, "playback", parse_playback)}


def _stasis_start(d: Mapping[str, Any]) -> _Fields:
    args = d.get("args")
    return {
        "channel": _required(d, "channel", parse_channel),
        "args": tuple(str(a) for a in args) if isinstance(args, list) else (),
        "replace_channel": _optional(d, "replace_channel", parse_channel),
    }


def _dtmf(d: Mapping[str, Any]) -> _Fields:
    return {
        "channel": _required(d, "channel", parse_channel),
        "digit": get_str(d, "digit"),
        "duration_ms": get_int(d, "duration_ms") or 0,
    }


def _hangup_request(d: Mapping[str, Any]) -> _Fields:
    return {**_channel_only(d), "cause": get_int(d, "cause"), "soft": get_bool(d, "soft")}


def _destroyed(d: Mapping[str, Any]) -> _Fields:
    return {**_channel_only(d), "cause": get_int(d, "cause"), "cause_txt": get_str(d, "cause_txt")}


_PARSERS: dict[str, tuple[type[AriEvent], Callable[[Mapping[str, Any]], _Fields]]] = {
    "StasisStart": (StasisStart, _stasis_start),
    "StasisEnd": (StasisEnd, _channel_only),
    "ChannelDtmfReceived": (ChannelDtmfReceived, _dtmf),
    "ChannelHangupRequest": (ChannelHangupRequest, _hangup_request),
    "ChannelDestroyed": (ChannelDestroyed, _destroyed),
    "PlaybackFinished": (PlaybackFinished, _playback_only),
}

#: The event types :func:`parse_event` turns into a dedicated class.
KNOWN_EVENT_TYPES: frozenset[str] = frozenset(_PARSERS)


def parse_event(data: Mapping[str, Any]) -> AriEvent:
    """One decoded websocket frame -> its event class, or :class:`UnknownEvent`.

    Raises :class:`AriProtocolError` for input that is not an ARI event (see module doc).
    """
    if not isinstance(data, Mapping):
        raise AriProtocolError("ARI event frame is not a JSON object")
    event_type = data.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise AriProtocolError("ARI event frame without a string 'type'")
    common: _Fields = {
        "type": event_type,
        "application": get_str(data, "application"),
        "timestamp": get_datetime(data, "timestamp"),
        "asterisk_id": get_opt_str(data, "asterisk_id"),
        "raw": MappingProxyType(dict(data)),
    }
    known = _PARSERS.get(event_type)
    if known is None:
        return UnknownEvent(**common)
    cls, fields = known
    return cls(**common, **fields(data))
