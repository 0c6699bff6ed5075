"""The sandbox itself: real SIP calls between the two Asterisk instances, digits and audio.

These tests listen on A's app ``callsec`` with a raw client, so they must not run while a
``callsec run`` is connected to the sandbox (ARI gives an app's events to one websocket).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable

import pytest

from tests.harness.agent import AgentPhones
from tests.harness.ari import AriClient, Channel, Event, is_event, new_id
from tests.harness.carrier import Carrier, CarrierCall
from tests.harness.goertzel import detect_dtmf_file
from tests.harness.local import LocalCaller
from tests.harness.sandbox import DEFAULT_CALLER_ID, Sandbox, dtmf_mode

pytestmark = pytest.mark.sandbox


@pytest.fixture
async def callsec_app(sandbox: Sandbox) -> AsyncIterator[AriClient]:
    """A raw listener on A's app ``callsec`` (stands in for the product)."""
    async with AriClient(sandbox.a, ["callsec"]) as client:
        yield client


def _stasis_start(args: list[str], name_prefix: str = "") -> Callable[[Event], bool]:
    def match(event: Event) -> bool:
        return (event.get("type") == "StasisStart" and event.get("args") == args
                and event["channel"]["name"].startswith(name_prefix))
    return match


async def _answered_probe_call(carrier: Carrier, app: AriClient) -> tuple[CarrierCall, Channel]:
    """A carrier call to 1100, answered by the raw ``callsec`` listener on A."""
    call = await carrier.call("1100")
    start = await app.wait_event(_stasis_start(["probe"], "PJSIP/pstn-"), timeout=10,
                                 what="StasisStart on A")
    a_channel = app.channel(start["channel"]["id"])
    await a_channel.answer()
    await call.wait_up(timeout=10)
    return call, a_channel


async def test_sip_call_from_carrier_delivers_rfc4733_digits_to_the_callsec_app(
    carrier: Carrier, callsec_app: AriClient,
) -> None:
    call = await carrier.call("1100", caller_id=DEFAULT_CALLER_ID)
    start = await callsec_app.wait_event(
        _stasis_start(["probe"], "PJSIP/pstn-"), timeout=10, what="StasisStart on A")
    assert start["channel"]["caller"]["number"] == DEFAULT_CALLER_ID
    assert start["channel"]["dialplan"]["exten"] == "1100"
    assert start["channel"]["state"] == "Ring"
    a_channel = callsec_app.channel(start["channel"]["id"])
    await a_channel.answer()
    await call.wait_up(timeout=10)

    await call.send_dtmf("123456#", between_ms=120, duration_ms=120)
    got = await callsec_app.wait_events(
        lambda e: is_event(e, "ChannelDtmfReceived", a_channel.id), 7, timeout=10,
        what="ChannelDtmfReceived on A")
    await asyncio.sleep(0.3)  # nothing more may follow
    got = a_channel.events("ChannelDtmfReceived")
    assert [e["digit"] for e in got] == list("123456#")
    assert all(60 <= e["duration_ms"] <= 250 for e in got)

    await call.hangup()
    await a_channel.wait_hangup(timeout=10)
    kinds = [e["type"] for e in a_channel.events()]
    assert kinds.index("StasisStart") < kinds.index("ChannelHangupRequest") < kinds.index(
        "StasisEnd")
    assert await a_channel.state() is None


async def test_digits_arrive_while_the_carrier_keeps_media_flowing(
    carrier: Carrier, callsec_app: AriClient,
) -> None:
    call, a_channel = await _answered_probe_call(carrier, callsec_app)
    await call.keep_media_flowing()
    await call.send_dtmf("90*")
    await asyncio.sleep(0.5)
    await call.send_dtmf("7#")
    got = await callsec_app.wait_events(
        lambda e: is_event(e, "ChannelDtmfReceived", a_channel.id), 5, timeout=10)
    assert [e["digit"] for e in got] == ["9", "0", "*", "7", "#"]
    await call.hangup()


async def test_agent_phone_on_b_answers_and_receives_digits_sent_by_a(
    sandbox: Sandbox, agents: AgentPhones,
) -> None:
    app = f"sandbox-test-{os.getpid()}"
    async with AriClient(sandbox.a, [app]) as pbx:
        channel_id = new_id("agentleg")
        before = agents.seen("agent103")
        await pbx.request("POST", f"/channels/{channel_id}", params={
            "endpoint": "PJSIP/agent103", "app": app, "appArgs": "agent-test"})
        phone = await agents.wait_ringing("agent103", timeout=10, known=before)
        a_leg = pbx.channel(channel_id)
        await a_leg.wait_up(timeout=10)
        await a_leg.keep_media_flowing()  # in-band: the last digit needs audio after it

        await a_leg.send_dtmf("*1")
        await asyncio.sleep(0.3)
        assert phone.digits == "*1"
        assert [d.digit for d in agents.dtmf_received("agent103")] == ["*", "1"]

        await agents.hangup("agent103")
        await a_leg.wait_hangup(timeout=10)
        recording = await agents.finish_recording("agent103")
        assert recording.is_file() and recording.stat().st_size > 44


async def test_local_channel_caller_digits_arrive_on_the_dialplan_leg(
    local_caller: LocalCaller, callsec_app: AriClient,
) -> None:
    call = await local_caller.call("1100")
    start = await callsec_app.wait_event(
        lambda e: is_event(e, "StasisStart", call.peer_id), timeout=10, what="StasisStart ;2")
    assert start["args"] == ["probe"]
    peer = callsec_app.channel(call.peer_id)
    await peer.answer()
    await call.wait_up(timeout=10)

    await call.send_dtmf("42#", between_ms=80, duration_ms=100)
    got = await callsec_app.wait_events(
        lambda e: is_event(e, "ChannelDtmfReceived", call.peer_id), 3, timeout=10)
    assert [e["digit"] for e in got] == ["4", "2", "#"]
    await call.hangup()
    await peer.wait_hangup(timeout=10)


async def test_key_tones_a_plays_as_audio_reach_the_carrier_per_its_dtmf_mode(
    sandbox: Sandbox, carrier: Carrier, callsec_app: AriClient,
) -> None:
    """rfc4733 on B: the tones stay plain audio in B's recording and B reports no digit.
    inband on B: B detects (reports) them and squelches them out of the audio."""
    call, a_channel = await _answered_probe_call(carrier, callsec_app)
    name = new_id("carrier-rec")
    path = await call.record(name)
    await asyncio.sleep(0.3)

    # DTMF '1' then '#' as audio played by A (A's endpoint does not turn it into events).
    await a_channel.play_tone("697+1209", 200)
    await asyncio.sleep(0.3)
    await a_channel.play_tone("941+1477", 200)
    await a_channel.keep_media_flowing()  # B's in-band detector needs audio after the tone
    await asyncio.sleep(0.3)
    await call.stop_recording(name)
    assert path.is_file()
    in_audio = [key for _, key in detect_dtmf_file(path)]
    reported = [e["digit"] for e in call.events("ChannelDtmfReceived")]
    if dtmf_mode(sandbox.b) == "inband":
        assert (in_audio, reported) == ([], ["1", "#"])
    else:
        assert (in_audio, reported) == (["1", "#"], [])
    await call.hangup()
