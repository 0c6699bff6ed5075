"""ARI resources (``Channel``, ``Bridge``, ``Playback``) parsed from Asterisk's JSON, with field
names from the swagger files shipped with Asterisk 22 (``channels.json``, ``bridges.json``,
``playbacks.json``). Import them from
:mod:`callsec_ari.ari.models`, which re-exports everything public here.

Lenient on optional fields (missing or mistyped -> ``""``, ``None`` or an empty mapping), strict
on the identifier: a channel, bridge or playback without ``id``
raises :class:`~callsec_ari.ari.errors.AriProtocolError`. Fields that can hold a phone number, a
dialled number or a variable's value are left out of ``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from callsec_ari.ari.errors import AriProtocolError

EMPTY_MAPPING: Mapping[str, Any] = MappingProxyType({})


def empty_mapping() -> Mapping[str, Any]:
    return EMPTY_MAPPING


@dataclass(frozen=True, kw_only=True)
class Channel:
    id: str
    name: str = ""
    state: str = ""
    caller_number: str = field(default="", repr=False)
    caller_name: str = field(default="", repr=False)
    connected_number: str = field(default="", repr=False)
    connected_name: str = field(default="", repr=False)
    dialplan_context: str = ""
    dialplan_exten: str = field(default="", repr=False)
    dialplan_priority: int | None = None
    language: str = ""
    creationtime: datetime | None = None
    channelvars: Mapping[str, str] = field(default_factory=empty_mapping, repr=False)


@dataclass(frozen=True, kw_only=True)
class Bridge:
    id: str
    technology: str = ""
    bridge_type: str = ""
    bridge_class: str = ""
    name: str = ""
    channels: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Playback:
    id: str
    media_uri: str = ""
    target_uri: str = ""
    state: str = ""


# --------------------------------------------------------------------------- field readers


def get_str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def get_opt_str(data: Mapping[str, Any], key: str) -> str | None:
    return get_str(data, key) if data.get(key) is not None else None


def get_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def get_bool(data: Mapping[str, Any], key: str) -> bool:
    value = data.get(key)
    if isinstance(value, str):
        return value.strip().lower() in {"true", "yes", "1"}
    return value is True or (isinstance(value, int) and value != 0)


def get_mapping(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else EMPTY_MAPPING


def get_datetime(data: Mapping[str, Any], key: str) -> datetime | None:
    """Asterisk writes ``2024-05-01T10:11:12.345+0000``; Python 3.11 reads that."""
    value = data.get(key)
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def require_id(data: Mapping[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise AriProtocolError(f"ARI {what} without a string '{key}'")
    return value


# --------------------------------------------------------------------------- parsers


def parse_channel(data: Mapping[str, Any]) -> Channel:
    caller = get_mapping(data, "caller")
    connected = get_mapping(data, "connected")
    dialplan = get_mapping(data, "dialplan")
    variables = get_mapping(data, "channelvars")
    return Channel(
        id=require_id(data, "id", "channel"),
        name=get_str(data, "name"),
        state=get_str(data, "state"),
        caller_number=get_str(caller, "number"),
        caller_name=get_str(caller, "name"),
        connected_number=get_str(connected, "number"),
        connected_name=get_str(connected, "name"),
        dialplan_context=get_str(dialplan, "context"),
        dialplan_exten=get_str(dialplan, "exten"),
        dialplan_priority=get_int(dialplan, "priority"),
        language=get_str(data, "language"),
        creationtime=get_datetime(data, "creationtime"),
        channelvars=MappingProxyType({str(k): get_str(variables, k) for k in variables}),
    )


def parse_bridge(data: Mapping[str, Any]) -> Bridge:
    channels = data.get("channels")
    return Bridge(
        id=require_id(data, "id", "bridge"),
        technology=get_str(data, "technology"),
        bridge_type=get_str(data, "bridge_type"),
        bridge_class=get_str(data, "bridge_class"),
        name=get_str(data, "name"),
        channels=tuple(str(c) for c in channels) if isinstance(channels, list) else (),
    )


def parse_playback(data: Mapping[str, Any]) -> Playback:
    return Playback(
        id=require_id(data, "id", "playback"),
        media_uri=get_str(data, "media_uri"),
        target_uri=get_str(data, "target_uri"),
        state=get_str(data, "state"),
    )
