"""Malformed and unknown ARI events, made by mutating the events recorded from the sandbox
(tests/fixtures/ari/*.jsonl): a field deleted, replaced by a value of the wrong type, an unknown
event type, a frame that is no object at all. Each recorded call is replayed with one or more
mutated frames through the client's frame decoding and the adapter.

The adapter never raises, posts only to calls it started, and passes on only real DTMF keys.
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callsec_ari.ari.adapter import AriAdapter
from callsec_ari.ari.client import AriClient
from callsec_ari.core import commands as c
from callsec_ari.core import events as e

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ari"
CALLS = {p.name: [json.loads(line) for line in p.read_text().splitlines() if line]
         for p in sorted(FIXTURES.glob("*.jsonl"))}
DTMF_KEYS = set("0123456789*#ABCD")

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=6)
WRONG = st.sampled_from([None, 7, -1, 3.5, True, "", "x" * 300, "12345", [], ["a", 1], {},
                         {"id": 5}]) | JSON


class Flow:
    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.done = False

    @property
    def state_name(self) -> str:
        return "ANY"

    def handle(self, event: e.Event) -> list[c.Command]:
        return []


class Dispatcher:
    def __init__(self) -> None:
        self.started: set[str] = set()
        self.posted: list[tuple[str, e.Event]] = []

    def start_call(self, call_id: str, flow: Any, first: e.Event, data: Any = None) -> None:
        assert isinstance(first, e.CallStarted)
        self.started.add(call_id)

    def post(self, call_id: str, event: e.Event) -> bool:
        self.posted.append((call_id, event))
        return call_id in self.started

    def get(self, call_id: str) -> None:
        return None


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in a decoded frame (dict keys and list indexes)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += paths(inner, (*prefix, index))
    return found


def mutate(frame: dict[str, Any], path: tuple[Any, ...], how: str, value: Any) -> Any:
    frame = copy.deepcopy(frame)
    parent: Any = frame
    for key in path[:-1]:
        parent = parent[key]
    if how == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return frame


@st.composite
def mutated_call(draw: st.DrawFn) -> tuple[str, list[str]]:
    name = draw(st.sampled_from(sorted(CALLS)))
    frames: list[Any] = [dict(f) for f in CALLS[name]]
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(frames) - 1))
        frame = frames[index]
        kind = draw(st.sampled_from(["field", "field", "field", "type", "frame", "insert"]))
        if kind == "field" and isinstance(frame, dict) and paths(frame):
            path = draw(st.sampled_from(paths(frame)))
            frames[index] = mutate(frame, path, draw(st.sampled_from(["delete", "replace"])),
                                   draw(WRONG))
        elif kind == "type" and isinstance(frame, dict):
            frames[index] = {**frame, "type": draw(st.sampled_from(
                ["ChannelTalkingStarted", "NoSuchEvent", "", "stasisstart", "StasisStart",
                 "ChannelDtmfReceived", "PlaybackFinished"]) | WRONG)}
        elif kind == "frame":
            frames[index] = draw(WRONG)
        else:
            frames.insert(index, draw(st.dictionaries(st.sampled_from(
                ["type", "channel", "playback", "digit", "args", "timestamp"]), WRONG)))
    raw = [f if isinstance(f, str) and draw(st.booleans()) else json.dumps(f) for f in frames]
    return name, raw


def replay(frames: list[str]) -> Dispatcher:
    dispatcher = Dispatcher()
    client = AriClient("http://127.0.0.1:9", "u", "p", ["callsec"], name="fuzz")
    adapter = AriAdapter(client, dispatcher,  # type: ignore[arg-type]
                         {"probe": lambda call_id, started: Flow(call_id)})

    async def feed() -> None:
        for text in frames:
            event = client._decode(text)
            if event is not None:
                await adapter.on_event(event)

    asyncio.run(feed())
    return dispatcher


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_call())
def test_mutated_recorded_events_never_break_the_adapter(call: tuple[str, list[str]]) -> None:
    _name, frames = call
    dispatcher = replay(frames)
    for call_id, event in dispatcher.posted:
        assert call_id in dispatcher.started, (call_id, event)
        if isinstance(event, e.DtmfReceived):
            assert event.digit in DTMF_KEYS, repr(event.digit)


def test_every_recorded_call_replays_unchanged_as_a_control() -> None:
    for frames in CALLS.values():
        dispatcher = replay([json.dumps(f) for f in frames])
        assert dispatcher.started and dispatcher.posted
