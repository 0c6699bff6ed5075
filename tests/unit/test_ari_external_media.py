"""Talk-through plumbing in the ARI adapter: media channels over ``externalMedia`` (shaped as the
sandbox's Asterisk 22 answered) and prompts played into a bridge."""

import asyncio
from typing import Any

import pytest

from callsec_ari.ari.adapter import AriAdapter
from callsec_ari.ari.errors import AriError
from callsec_ari.ari.external_media import open_external_media
from callsec_ari.ari.models import parse_event
from callsec_ari.ari.resources import parse_channel
from callsec_ari.core import commands as c
from callsec_ari.core import events as e
from callsec_ari.core.ports import CallContext, CallHandle

CALL = "callsec-a-1"


def media_channel(channel_id: str, *, variables: bool = True) -> dict[str, Any]:
    """A UnicastRTP channel as ``POST /channels/externalMedia`` answered on the sandbox."""
    return {"id": channel_id, "name": "UnicastRTP/127.0.0.1:46709-0x7ff448012a60",
            "state": "Down", "caller": {"name": "", "number": ""},
            "dialplan": {"context": "default", "exten": "s", "priority": 1,
                         "app_name": "AppDial2", "app_data": "(Outgoing Line)"},
            "language": "en",
            "channelvars": {"UNICASTRTP_LOCAL_PORT": "20036",
                            "UNICASTRTP_LOCAL_ADDRESS": "127.0.0.1"} if variables else {}}


def stasis_start(channel_id: str) -> Any:
    return parse_event({"type": "StasisStart", "timestamp": "2026-11-30T03:35:37.530+0000",
                        "args": [], "application": "callsec",
                        "channel": {**media_channel(channel_id), "state": "Up"}})


class Client:
    def __init__(self, *, variables: bool = True) -> None:
        self.variables = variables
        self.requests: list[tuple[str, Any]] = []

    async def external_media(self, **params: Any) -> Any:
        self.requests.append(("externalMedia", params))
        return parse_channel(media_channel(params["channel_id"], variables=self.variables))

    async def get_variable(self, channel_id: str, name: str) -> str:
        self.requests.append(("variable", name))
        return {"UNICASTRTP_LOCAL_ADDRESS": "127.0.0.2", "UNICASTRTP_LOCAL_PORT": "20040"}[name]

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        self.requests.append(("hangup", channel_id))

    async def play_bridge(self, bridge_id: str, media: Any, **kwargs: Any) -> None:
        self.requests.append(("play_bridge", (bridge_id, tuple(media), kwargs["playback_id"])))


class Dispatcher:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.posted: list[tuple[str, e.Event]] = []

    def start_call(self, call_id: str, *_: Any, **__: Any) -> None:
        self.started.append(call_id)

    def post(self, call_id: str, event: e.Event) -> bool:
        self.posted.append((call_id, event))
        return True


def adapter(client: Client) -> tuple[AriAdapter, Dispatcher, CallHandle]:
    dispatcher = Dispatcher()
    ari = AriAdapter(client=client, dispatcher=dispatcher,  # type: ignore[arg-type]
                     flows={"connect": lambda *_: None}, app="callsec")  # type: ignore[dict-item]
    call = CallHandle(call_id=CALL, flow=None, log=None,  # type: ignore[arg-type]
                      context=CallContext(channel_id=CALL))
    return ari, dispatcher, call


def test_media_channel_is_ready_only_after_its_stasis_start_and_starts_no_call() -> None:
    client = Client()
    ari, dispatcher, call = adapter(client)
    command = c.CreateExternalMedia(leg="media-caller", host="127.0.0.1", port=40000)

    async def scenario() -> list[e.Event]:
        creating = asyncio.ensure_future(ari.execute(call, command))
        await asyncio.sleep(0.05)
        assert not creating.done()  # Asterisk refuses addChannel before the StasisStart
        await ari.on_event(stasis_start(f"{CALL}-media-caller"))
        return list(await creating)

    (ready,) = asyncio.run(scenario())
    assert ready == e.ExternalMediaReady(at=ready.at, leg="media-caller", address="127.0.0.1",
                                         port=20036)
    assert client.requests[0] == ("externalMedia", {
        "app": "callsec", "external_host": "127.0.0.1:40000", "format": "ulaw",
        "channel_id": f"{CALL}-media-caller", "direction": "both"})
    assert dispatcher.started == []  # its StasisStart is no new call
    assert ari.channels[f"{CALL}-media-caller"] == (CALL, "media-caller")
    # its hang-up later reaches the call as that leg's LegGone
    asyncio.run(ari.on_event(parse_event({
        "type": "ChannelDestroyed", "timestamp": "2026-11-30T03:35:39.547+0000", "cause": 16,
        "cause_txt": "Normal Clearing", "channel": media_channel(f"{CALL}-media-caller")})))
    assert [(cid, type(ev).__name__, getattr(ev, "leg", "")) for cid, ev in
            dispatcher.posted] == [(CALL, "LegGone", "media-caller")]


def test_media_address_is_read_back_when_the_answer_lacks_it() -> None:
    client = Client(variables=False)
    started = asyncio.Event()
    started.set()
    ready = asyncio.run(open_external_media(
        client, app="callsec", channel_id="x-media-agent", started=started,  # type: ignore[arg-type]
        command=c.CreateExternalMedia(leg="media-agent", host="::1", port=40002)))
    assert (ready.address, ready.port) == ("127.0.0.2", 20040)
    assert client.requests[0][1]["external_host"] == "[::1]:40002"


def test_a_media_channel_that_never_enters_the_app_is_hung_up_and_fails() -> None:
    client = Client()
    with pytest.raises(AriError):
        asyncio.run(open_external_media(
            client, app="callsec", channel_id="x-media-caller",  # type: ignore[arg-type]
            started=asyncio.Event(), start_timeout=0.05,
            command=c.CreateExternalMedia(leg="media-caller", host="127.0.0.1", port=1)))
    assert client.requests[-1] == ("hangup", "x-media-caller")


def test_a_play_with_a_bridge_goes_to_the_bridge_and_its_end_to_the_call() -> None:
    client = Client()
    ari, dispatcher, call = adapter(client)
    asyncio.run(ari.execute(call, c.Play(playback_id="CP-1-p1", media=("sound:x",),
                                         bridge_id="callsec-capture-x")))
    assert client.requests == [("play_bridge", ("callsec-capture-x", ("sound:x",), "CP-1-p1"))]
    asyncio.run(ari.on_event(parse_event({
        "type": "PlaybackFinished", "timestamp": "2026-11-30T03:35:37.982+0000",
        "playback": {"id": "CP-1-p1", "media_uri": "sound:x", "target_uri": "bridge:x",
                     "language": "en", "state": "done"}})))
    assert [(cid, type(ev).__name__) for cid, ev in dispatcher.posted] == [
        (CALL, "PlaybackFinished")]


def test_recovery_names_the_media_legs_a_dead_callsec_left_of_an_orphaned_call() -> None:
    from callsec_ari.connect.recovery import find_orphans

    bridges = {"callsec-call-k1": ("k1-agent", "k1-media-agent"),
               "callsec-capture-k1": ("k1", "k1-media-caller")}
    channels = {"k1", "k1-agent", "k1-media-agent", "k1-media-caller"}
    (orphan,) = find_orphans(bridges, channels, known=lambda _: False)
    assert orphan.capture and orphan.media == ("media-caller", "media-agent")
    assert orphan.event(0.0).media == ("media-caller", "media-agent")
    (gone,) = find_orphans(bridges, {"k1", "k1-agent"}, known=lambda _: False)
    assert gone.media == ()
