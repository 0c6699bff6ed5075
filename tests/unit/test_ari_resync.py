"""After a websocket reconnect the adapter re-reads Asterisk: what happened while it was deaf."""

import asyncio
from typing import Any

from callsec_ari.ari.adapter import AriAdapter
from callsec_ari.ari.resources import parse_channel
from callsec_ari.core import events as e
from tests.unit.test_ari_adapter import FakeDispatcher


class ListingClient:
    """Answers the two look-ups a resync makes: every channel, and the app's own channels."""

    def __init__(self, channels: list[str], in_app: list[str]) -> None:
        self.channels, self.in_app = channels, in_app

    async def list_channels(self) -> list[Any]:
        return [parse_channel({"id": cid, "name": f"PJSIP/{cid}", "state": "Up"})
                for cid in self.channels]

    async def request(self, method: str, path: str, **_: Any) -> Any:
        assert (method, path) == ("GET", "/applications/callsec")
        return {"name": "callsec", "channel_ids": self.in_app, "bridge_ids": []}


def resync(adapter: AriAdapter) -> None:
    asyncio.run(adapter.resynchronise(at=1.0))


def test_agent_who_answered_while_the_websocket_was_down_is_reported_answered() -> None:
    dispatcher = FakeDispatcher()
    client = ListingClient(["c1", "c1-agent"], in_app=["c1", "c1-agent"])
    adapter = AriAdapter(client=client, dispatcher=dispatcher, flows={})  # type: ignore[arg-type]
    adapter.channels.update({"c1": ("c1", "caller"), "c1-agent": ("c1", "agent")})
    resync(adapter)
    posted = [(cid, type(ev).__name__, getattr(ev, "leg", "")) for cid, ev in dispatcher.posted]
    assert ("c1", "Resynchronised", "") in posted
    assert ("c1", "LegAnswered", "agent") in posted
    dispatcher.posted.clear()
    resync(adapter)  # a second reconnect does not answer it twice
    assert not [ev for _, ev in dispatcher.posted if isinstance(ev, e.LegAnswered)]


def test_a_leg_still_ringing_or_already_answered_gets_no_answer_event() -> None:
    dispatcher = FakeDispatcher()
    # c1-agent rings (exists, not in the app yet); c2-agent answered before the drop
    client = ListingClient(["c1", "c1-agent", "c2", "c2-agent"],
                           in_app=["c1", "c2", "c2-agent"])
    adapter = AriAdapter(client=client, dispatcher=dispatcher, flows={})  # type: ignore[arg-type]
    adapter.channels.update({"c1": ("c1", "caller"), "c1-agent": ("c1", "agent"),
                             "c2": ("c2", "caller")})
    asyncio.run(adapter.on_event(_leg_answered("c2-agent", "c2")))
    dispatcher.posted.clear()
    resync(adapter)
    assert not [ev for _, ev in dispatcher.posted if isinstance(ev, e.LegAnswered)]


def _leg_answered(channel_id: str, call_id: str) -> Any:
    from callsec_ari.ari.models import parse_event
    return parse_event({"type": "StasisStart", "timestamp": "2026-11-30T00:00:00.000+0000",
                        "args": ["leg", call_id, "agent"], "application": "callsec",
                        "channel": {"id": channel_id, "name": f"PJSIP/{channel_id}",
                                    "state": "Up", "caller": {"number": ""},
                                    "language": "en"}})
