"""The ARI adapter's translation, fed with events recorded from the sandbox Asterisk
(tests/fixtures/ari/*.jsonl, made by tools/record_ari_events.py)."""

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from callsec_ari.ari.adapter import AriAdapter, parse_stasis_args
from callsec_ari.ari.models import parse_event
from callsec_ari.core import events as e
from callsec_ari.core.flow import Flow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ari"


def recorded(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line]


class FakeDispatcher:
    def __init__(self) -> None:
        self.started: list[tuple[str, e.CallStarted]] = []
        self.posted: list[tuple[str, e.Event]] = []

    def start_call(self, call_id: str, flow: Flow, first: e.Event, data: Any = None) -> None:
        assert isinstance(first, e.CallStarted)
        self.started.append((call_id, first))

    def post(self, call_id: str, event: e.Event) -> bool:
        self.posted.append((call_id, event))
        return True


def run_through(events: list[dict[str, Any]]) -> FakeDispatcher:
    dispatcher = FakeDispatcher()
    adapter = AriAdapter(client=None, dispatcher=dispatcher,  # type: ignore[arg-type]
                         flows={"probe": lambda call_id, started: None})  # type: ignore[dict-item]

    async def feed() -> None:
        for raw in events:
            await adapter.on_event(parse_event(raw))

    asyncio.run(feed())
    return dispatcher


def test_recorded_call_starts_one_flow_with_caller_and_args() -> None:
    dispatcher = run_through(recorded("dtmf_call.jsonl"))
    assert len(dispatcher.started) == 1
    call_id, started = dispatcher.started[0]
    assert started.flow == "probe"
    assert started.caller_number == "+4915112345678"
    assert call_id.startswith("callsec-a-")


def test_recorded_dtmf_arrives_in_order_and_hangup_once() -> None:
    dispatcher = run_through(recorded("dtmf_call.jsonl"))
    digits = "".join(ev.digit for _, ev in dispatcher.posted if isinstance(ev, e.DtmfReceived))
    assert digits == "1234#"
    hangups = [ev for _, ev in dispatcher.posted if isinstance(ev, e.CallerHungUp)]
    assert len(hangups) == 1
    assert "1234" not in repr(dispatcher.posted)


def test_events_for_unknown_channels_are_ignored() -> None:
    events = [ev for ev in recorded("dtmf_call.jsonl") if ev["type"] != "StasisStart"]
    dispatcher = run_through(events)
    assert dispatcher.posted == [] and dispatcher.started == []


@pytest.mark.parametrize(("args", "expected"), [
    (("verify",), ("verify", (), ())),
    (("connect", "PJSIP/agent100", "policy=risk", "lang=de"),
     ("connect", ("PJSIP/agent100",), (("policy", "risk"), ("lang", "de")))),
    ((), ("", (), ())),
    (("VERIFY", "Local/s@queues"), ("verify", ("Local/s@queues",), ())),
])
def test_stasis_arguments_split_into_flow_positional_and_options(args, expected) -> None:  # type: ignore[no-untyped-def]
    assert parse_stasis_args(args) == expected


def _dtmf_burst(lags: list[float]) -> list[dict[str, Any]]:
    """The recorded call's StasisStart, then one '1' per lag: pressed ``lag`` seconds ago
    (Asterisk's timestamp) but all delivered now, back to back."""
    from datetime import UTC, datetime, timedelta

    events = recorded("dtmf_call.jsonl")
    start = next(ev for ev in events if ev["type"] == "StasisStart")
    template = next(ev for ev in events if ev["type"] == "ChannelDtmfReceived")
    now = datetime.now(UTC)
    burst = []
    for lag in lags:
        stamp = (now - timedelta(seconds=lag)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
        burst.append({**template, "digit": "1", "timestamp": stamp})
    return [start, *burst]


def test_repeated_key_delivered_in_a_burst_is_not_taken_for_a_duplicate() -> None:
    from callsec_ari.core.digits import CollectorSpec, DigitCollector

    dispatcher = run_through(_dtmf_burst([0.45, 0.25, 0.05]))  # pressed 200 ms apart
    presses = [ev for _, ev in dispatcher.posted if isinstance(ev, e.DtmfReceived)]
    collector = DigitCollector(CollectorSpec(max_digits=8))
    results = [collector.feed(ev.digit, ev.at) for ev in presses]
    assert [r.count for r in results] == [1, 2, 3]
    assert presses[1].at - presses[0].at == pytest.approx(0.2, abs=0.03)


def test_re_queued_dtmf_end_with_the_same_timestamp_stays_a_duplicate() -> None:
    from callsec_ari.core.digits import CollectorSpec, DigitCollector, Outcome

    dispatcher = run_through(_dtmf_burst([0.3, 0.3]))
    presses = [ev for _, ev in dispatcher.posted if isinstance(ev, e.DtmfReceived)]
    collector = DigitCollector(CollectorSpec(max_digits=8))
    outcomes = [collector.feed(ev.digit, ev.at).outcome for ev in presses]
    assert outcomes == [Outcome.PROGRESS, Outcome.IGNORED]


def _observable(dispatcher: FakeDispatcher) -> list[tuple[str, str, str]]:
    """What the adapter did, without arrival times."""
    started = [(call_id, "start", ev.flow) for call_id, ev in dispatcher.started]
    posted = [(call_id, type(ev).__name__, getattr(ev, "leg", "")) for call_id, ev in
              dispatcher.posted]
    return started + posted


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.jsonl")))
def test_events_asterisk_is_told_not_to_send_change_nothing_the_adapter_does(
        fixture: str) -> None:
    from callsec_ari.ari.adapter import EVENT_TYPES

    events = recorded(fixture)
    everything = run_through(events)
    filtered = run_through([ev for ev in events if ev["type"] in EVENT_TYPES])
    assert _observable(filtered) == _observable(everything)
    assert _observable(everything)  # the fixture exercises the adapter at all


class RecordingClient:
    """The few AriClient calls these tests need; records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []

    async def request(self, method: str, path: str, *, params: Any = None,
                      json: Any = None) -> Any:
        self.requests.append((method, path, json))
        return {}

    async def play(self, channel_id: str, media: Any, *, playback_id: str | None = None,
                   lang: str | None = None) -> None:
        self.requests.append(("POST", f"/channels/{channel_id}/play", playback_id))

    async def stop_playback(self, playback_id: str) -> None:
        self.requests.append(("DELETE", f"/playbacks/{playback_id}", None))


def test_connect_asks_asterisk_for_the_handled_event_types_only() -> None:
    from callsec_ari.ari.adapter import EVENT_TYPES
    from callsec_ari.ari.models import Connected

    client = RecordingClient()
    adapter = AriAdapter(client=client, dispatcher=FakeDispatcher(),  # type: ignore[arg-type]
                         flows={}, app="callsec-test")
    asyncio.run(adapter.on_event(Connected(server="asterisk1", reconnect=False)))
    method, path, body = client.requests[0]
    assert (method, path) == ("PUT", "/applications/callsec-test/eventFilter")
    assert [item["type"] for item in body["allowed"]] == list(EVENT_TYPES)


def test_stopping_a_prompt_that_already_finished_sends_no_request() -> None:
    from callsec_ari.core import commands as c
    from callsec_ari.core.ports import CallContext, CallHandle

    client = RecordingClient()
    adapter = AriAdapter(client=client, dispatcher=FakeDispatcher(),  # type: ignore[arg-type]
                         flows={})
    call = CallHandle(call_id="call-1", flow=None, log=None,  # type: ignore[arg-type]
                      context=CallContext(channel_id="call-1"))
    finished = parse_event({"type": "PlaybackFinished", "timestamp": "2026-11-30T00:00:00.000+0000",
                            "playback": {"id": "call-1-v1", "media_uri": "sound:x",
                                         "target_uri": "channel:call-1", "language": "en",
                                         "state": "done"}})

    async def scenario() -> None:
        for pid in ("call-1-v1", "call-1-v2"):
            await adapter.execute(call, c.Play(playback_id=pid, media=("sound:x",)))
        await adapter.on_event(finished)
        for pid in ("call-1-v1", "call-1-v2"):
            await adapter.execute(call, c.StopPlayback(playback_id=pid))

    asyncio.run(scenario())
    stops = [path for method, path, _ in client.requests if method == "DELETE"]
    assert stops == ["/playbacks/call-1-v2"]
