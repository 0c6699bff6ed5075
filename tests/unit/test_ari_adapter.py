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
