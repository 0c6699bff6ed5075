"""parse_event / resource parsing, on Asterisk's JSON shapes.

Sources of payloads, strongest first:
1. ``tests/fixtures/ari/*.jsonl``: frames recorded from the sandbox Asterisk 22, one per line.
2. Payloads synthesised from the swagger models Asterisk ships (``events.json`` & co. under the
   cached root file system), with every *required* field and nothing else.
3. Hand-written payloads copied from the swagger model shapes (always run).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callsec_ari.ari import models as m
from callsec_ari.ari.errors import AriProtocolError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ari"
SWAGGER = (Path(os.environ.get("CALLSEC_ASTERISK_ROOT", "/var/cache/callsec/asterisk-root"))
           / "usr/share/asterisk/rest-api")

TS = "2024-05-01T10:11:12.345+0000"


def channel(channel_id: str = "1714557072.12", **extra: Any) -> dict[str, Any]:
    """A Channel as channels.json describes it (all required fields)."""
    data: dict[str, Any] = {
        "id": channel_id,
        "protocol_id": "",
        "name": "PJSIP/pstn-00000003",
        "state": "Ring",
        "caller": {"name": "Erika Mustermann", "number": "+4915112345678"},
        "connected": {"name": "", "number": ""},
        "accountcode": "",
        "dialplan": {"context": "inbound", "exten": "4930123", "priority": 2,
                     "app_name": "Stasis", "app_data": "callsec,verify"},
        "creationtime": "2024-05-01T10:11:10.001+0200",
        "language": "de",
    }
    data.update(extra)
    return data


def bridge(bridge_id: str = "b-1", channels: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"id": bridge_id, "technology": "simple_bridge", "bridge_type": "mixing",
            "bridge_class": "stasis", "creator": "Stasis", "name": "agent-room",
            "channels": list(channels), "creationtime": TS}


def event(event_type: str, **fields: Any) -> dict[str, Any]:
    return {"type": event_type, "application": "callsec", "timestamp": TS,
            "asterisk_id": "52:54:00:12:34:56", **fields}


# --------------------------------------------------------------------------- hand-written


def test_stasis_start_carries_channel_caller_and_args() -> None:
    parsed = m.parse_event(event("StasisStart", args=["verify", "lang=de"],
                                 channel=channel(channelvars={"STIR_SHAKEN_ATTESTATION": "A"})))
    assert isinstance(parsed, m.StasisStart)
    assert parsed.args == ("verify", "lang=de")
    assert parsed.replace_channel is None
    ch = parsed.channel
    assert (ch.id, ch.name, ch.state, ch.language) == (
        "1714557072.12", "PJSIP/pstn-00000003", "Ring", "de")
    assert (ch.caller_number, ch.caller_name) == ("+4915112345678", "Erika Mustermann")
    assert (ch.dialplan_context, ch.dialplan_exten, ch.dialplan_priority) == (
        "inbound", "4930123", 2)
    assert ch.channelvars == {"STIR_SHAKEN_ATTESTATION": "A"}
    assert ch.creationtime == datetime(2024, 5, 1, 10, 11, 10, 1000,
                                       tzinfo=timezone(timedelta(hours=2)))
    assert parsed.application == "callsec"
    assert parsed.asterisk_id == "52:54:00:12:34:56"
    assert parsed.timestamp == datetime(2024, 5, 1, 10, 11, 12, 345000, tzinfo=UTC)


def test_dtmf_event_has_digit_and_duration() -> None:
    parsed = m.parse_event(event("ChannelDtmfReceived", digit="#", duration_ms=120,
                                 channel=channel()))
    assert isinstance(parsed, m.ChannelDtmfReceived)
    assert (parsed.digit, parsed.duration_ms, parsed.channel.id) == ("#", 120, "1714557072.12")


def test_hangup_destroyed_and_varset_fields() -> None:
    hangup = m.parse_event(event("ChannelHangupRequest", cause=16, soft=True, channel=channel()))
    assert isinstance(hangup, m.ChannelHangupRequest)
    assert (hangup.cause, hangup.soft) == (16, True)
    bare = m.parse_event(event("ChannelHangupRequest", channel=channel()))
    assert isinstance(bare, m.ChannelHangupRequest)
    assert (bare.cause, bare.soft) == (None, False)
    destroyed = m.parse_event(event("ChannelDestroyed", cause=16, cause_txt="Normal Clearing",
                                    channel=channel()))
    assert isinstance(destroyed, m.ChannelDestroyed)
    assert (destroyed.cause, destroyed.cause_txt) == (16, "Normal Clearing")


def test_playback_finished_and_events_callsec_does_not_model() -> None:
    playback = {"id": "pb-1", "media_uri": "sound:hello-world", "target_uri": "channel:c1",
                "language": "en", "state": "playing"}
    parsed = m.parse_event(event("PlaybackFinished", playback=playback))
    assert isinstance(parsed, m.PlaybackFinished)
    assert parsed.playback == m.Playback(id="pb-1", media_uri="sound:hello-world",
                                         target_uri="channel:c1", state="playing")
    for kind in ("ChannelVarset", "BridgeCreated", "PlaybackStarted", "ChannelUserevent"):
        other = m.parse_event(event(kind, bridge=bridge(), playback=playback))
        assert type(other) is m.UnknownEvent and other.type == kind


def test_unknown_type_becomes_unknown_event_with_raw() -> None:
    payload = event("ChannelTalkingStarted", channel=channel())
    parsed = m.parse_event(payload)
    assert type(parsed) is m.UnknownEvent
    assert parsed.type == "ChannelTalkingStarted"
    assert parsed.raw["channel"]["id"] == "1714557072.12"


def test_missing_optional_fields_do_not_raise() -> None:
    parsed = m.parse_event({"type": "StasisEnd", "channel": {"id": "c9"}})
    assert isinstance(parsed, m.StasisEnd)
    assert parsed.timestamp is None and parsed.application == "" and parsed.asterisk_id is None
    assert parsed.channel == m.Channel(id="c9")


@pytest.mark.parametrize("payload", [
    [],
    "StasisStart",
    {},
    {"type": 7},
    {"type": "StasisStart", "args": []},
    {"type": "StasisStart", "channel": {"name": "no id"}},
    {"type": "PlaybackFinished", "playback": "pb-1"},
])
def test_malformed_frames_raise_protocol_error(payload: Any) -> None:
    with pytest.raises(AriProtocolError):
        m.parse_event(payload)


def test_bad_timestamp_is_none_not_an_error() -> None:
    parsed = m.parse_event({"type": "Foo", "timestamp": "yesterday"})
    assert parsed.timestamp is None


@given(st.text(alphabet="0123456789*#ABCD", min_size=1, max_size=1),
       st.text(alphabet="0123456789", min_size=6, max_size=15))
def test_repr_of_events_never_shows_digits_or_numbers(digit: str, number: str) -> None:
    payload = event("ChannelDtmfReceived", digit=digit, duration_ms=100,
                    channel=channel("c1", name="PJSIP/pstn-abcdef",
                                    caller={"name": "", "number": number},
                                    dialplan={"context": "inbound", "exten": number,
                                              "priority": 1}))
    parsed = m.parse_event(payload)
    assert isinstance(parsed, m.ChannelDtmfReceived)
    assert parsed.digit == digit
    text = repr(parsed)
    assert number not in text
    assert f"digit={digit!r}" not in text and "raw=" not in text


def test_events_are_frozen() -> None:
    parsed = m.parse_event(event("StasisEnd", channel=channel()))
    with pytest.raises(AttributeError):
        parsed.type = "x"  # type: ignore[misc]


# --------------------------------------------------------------------------- recorded frames


def _recorded_frames() -> list[tuple[str, dict[str, Any]]]:
    frames: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(FIXTURES.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                frames.append((f"{path.name}:{number}", json.loads(line)))
    return frames


RECORDED = _recorded_frames()


@pytest.mark.skipif(not RECORDED, reason="no recorded frames in tests/fixtures/ari/")
@pytest.mark.parametrize(("where", "frame"), RECORDED, ids=[w for w, _ in RECORDED])
def test_recorded_asterisk_frames_parse_to_their_types(where: str, frame: dict[str, Any]) -> None:
    parsed = m.parse_event(frame)
    assert parsed.type == frame["type"]
    if frame["type"] in m.KNOWN_EVENT_TYPES:
        assert type(parsed).__name__ == frame["type"], where
    else:
        assert type(parsed) is m.UnknownEvent, where
    assert parsed.timestamp is not None, where
    assert parsed.application, where


# --------------------------------------------------------------------------- swagger-shaped


def _swagger_models() -> dict[str, dict[str, Any]]:
    models: dict[str, dict[str, Any]] = {}
    for path in sorted(SWAGGER.glob("*.json")):
        models.update(json.loads(path.read_text(encoding="utf-8")).get("models", {}))
    return models


def _sample(type_name: str, models: dict[str, dict[str, Any]], depth: int = 0) -> Any:
    if type_name.startswith("List["):
        return [_sample(type_name[5:-1], models, depth)]
    simple = {"string": "x1", "int": 1, "long": 1, "double": 1.0, "boolean": False,
              "Date": TS, "object": {}}
    if type_name in simple:
        return simple[type_name]
    properties = models[type_name].get("properties", {})
    return {name: _sample(spec["type"], models, depth + 1)
            for name, spec in properties.items() if spec.get("required")}


@pytest.mark.skipif(not SWAGGER.is_dir(), reason="Asterisk's swagger files are not cached here")
@pytest.mark.parametrize("event_type", sorted(m.KNOWN_EVENT_TYPES))
def test_every_modelled_event_parses_from_its_swagger_required_fields(event_type: str) -> None:
    models = _swagger_models()
    payload = {"type": event_type, **_sample(event_type, models), **_sample("Event", models)}
    parsed = m.parse_event(payload)
    assert type(parsed).__name__ == event_type
