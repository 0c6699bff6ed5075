"""Secure DTMF capture on real SIP calls (RFC 4733 digits): carrier B calls A's number 2100
(MixMonitor on the caller's channel, then ``Stasis(callsec,connect,PJSIP/agent100)``); the
real ``callsec run`` connects the agent's phone on B; the agent (a real user, logged in with
TOTP) asks for the caller's card over the HTTP API or with ``*1`` on the phone's keypad.

What the agent could hear is what B's agent channel received: its DTMF events (AgentPhones)
and its audio (a WAV, scanned with Goertzel). The MixMonitor file of the caller's channel is
scanned the same way. Tones the caller sends as *audio* (1000 Hz, and a DTMF-like 941+1336 Hz
pair before the capture) are positive controls: they must reach the agent and the recording,
so a silent WAV cannot pass.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.harness.agent import AgentPhones
from tests.harness.carrier import Carrier
from tests.harness.sandbox import Sandbox
from tests.integration.capture_checks import (
    LogTail,
    asterisk_logs,
    channel_variables,
    dtmf_hits,
    find_leaks,
    loud_seconds,
    sqlite_dump,
    tone_runs,
)
from tests.integration.capture_env import (
    AGENT,
    LiveCall,
    Product,
    amex,
    break_luhn,
    connected_call,
    expiry,
    german_iban_digits,
    past_expiry,
    rare_number,
    running_product,
    send_tone,
    type_fields,
    visa,
)

pytestmark = pytest.mark.sandbox
CARD = ("card_number", "expiry", "cvv")


@pytest.fixture(scope="module")
async def product(sandbox: Sandbox) -> AsyncIterator[Product]:
    async with running_product("capture") as running:
        yield running


class Leaks:
    """Collects what must not hold the test's values: logs written during the test, the
    database, the SSE stream, the caller's channel variables."""

    def __init__(self, product: Product) -> None:
        self.product = product
        self.tails = [LogTail(p) for p in asterisk_logs()]
        self.blobs: dict[str, bytes] = {}

    def take_variables(self, live: LiveCall) -> None:
        self.blobs["channel variables"] = channel_variables(live.channel_name)

    def check(self, values: Sequence[str], live: LiveCall) -> None:
        blobs = dict(self.blobs)
        blobs["callsec log"] = self.product.proc.log_file.read_bytes()
        blobs["callsec stderr"] = (self.product.workdir / "stderr.log").read_bytes()
        for tail in self.tails:
            blobs[f"asterisk {tail.path.parent.parent.name}/{tail.path.name}"] = tail.read()
        blobs["database"] = sqlite_dump(self.product.workdir / "callsec.db")
        blobs["sse"] = live.sse.path.read_bytes()
        assert b"Variables" in blobs["channel variables"]  # taken while the call ran
        assert find_leaks(values, blobs) == []


def masked_capture_events(live: LiveCall, capture_id: str) -> list[dict[str, Any]]:
    return live.sse.capture_events(capture_id)


async def finish_agent_recording(agents: AgentPhones) -> Path:
    path = await agents.finish_recording(AGENT, timeout=15)
    async with asyncio.timeout(5):
        while not path.exists():
            await asyncio.sleep(0.1)
    return path


async def wait_mixmonitor(live: LiveCall) -> Path:
    async with asyncio.timeout(15):
        while not live.mixmonitor.exists():
            await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # MixMonitor closes the file once the channel is gone
    return live.mixmonitor


# --- the API capture: nothing reaches the agent, the recording or a log ------------------------

async def test_api_card_capture_agent_and_recording_get_no_digits_and_nothing_leaks(
        product: Product, carrier: Carrier, agents: AgentPhones, ari_a: aiohttp.ClientSession,
        register_secret: Callable[[str], None]) -> None:
    card, exp, cvv = visa(), expiry(), rare_number(3)
    register_secret(card)
    leaks = Leaks(product)
    desk = product.desk
    async with connected_call(desk, carrier, agents, ari_a, product.sse_dir) as live:
        await asyncio.sleep(1.0)
        control = live.mark("control")
        await live.carrier.play_tone("941+1336", 400)   # a DTMF-like pair, as audio
        await asyncio.sleep(0.5)
        pre, _ = await send_tone(live.carrier)
        await asyncio.sleep(0.5)
        capture_id = await desk.request_capture(live.call_id, CARD)
        await live.sse.wait_stage(capture_id, "started")
        started = live.mark("started")
        await type_fields(live, capture_id, [("card_number", card + "#"), ("expiry", exp),
                                             ("cvv", cvv)])
        finished_event = await live.sse.wait_stage(capture_id, "finished")
        finished = live.mark("finished")
        leaks.take_variables(live)
        # "capture complete" + beep: while a bridged channel plays a prompt, Asterisk
        # suspends it from the bridge, so the conversation resumes after about 3 s.
        await asyncio.sleep(4.0)
        post, _ = await send_tone(live.carrier)
        await asyncio.sleep(0.8)
        wav = await finish_agent_recording(agents)
    mixmon = await wait_mixmonitor(live)

    # the agent's phone received no DTMF event at all
    assert live.agent.dtmf == []
    # the agent's audio: the controls arrived, nothing DTMF-like during the capture
    hits = dtmf_hits(wav)
    controls = [t for t, key in hits if key == "0"]
    assert controls, f"the DTMF-like control tone never reached the agent's WAV: {hits}"
    offset = controls[0] - (control - live.agent_t0)  # WAV time minus monotonic-derived time
    window = (started - live.agent_t0 + offset - 0.3, finished - live.agent_t0 + offset + 0.3)
    assert [h for h in hits if window[0] <= h[0] <= window[1]] == []
    assert [h for h in hits if h[0] > controls[0] + 1.0] == []
    runs = tone_runs(wav, 1000)
    pre_at, post_at = pre - live.agent_t0 + offset, post - live.agent_t0 + offset
    assert any(abs(start - pre_at) < 0.6 for start, _ in runs), (runs, pre_at)
    assert any(abs(start - post_at) < 0.6 for start, _ in runs), (runs, post_at)  # restored

    # the MixMonitor recording of the caller's channel: muted for the capture. MixMonitor
    # writes only while frames flow, so its clock is not the wall clock: the two 1000 Hz tones
    # are the anchors. Between them only the "capture complete" prompt and beep (the last
    # ~3.5 s, after the unmute) may be loud; the field prompts the caller heard were muted.
    mix_runs = tone_runs(mixmon, 1000)
    assert len(mix_runs) == 2, mix_runs
    muted = (mix_runs[0][1] + 0.2, mix_runs[1][0] - 3.6)
    assert muted[1] - muted[0] > 0.5, mix_runs
    assert loud_seconds(mixmon, *muted) < 0.1
    mix_hits = dtmf_hits(mixmon)
    assert [key for _, key in mix_hits] == ["0"], mix_hits  # only the control
    assert "recordings of the caller muted: 1" in product.proc.log_text()

    # what the agent saw: dots, brand, last 4; the stored capture: masked + vault refs
    assert finished_event["result"] == "captured"
    assert finished_event["brand"] == "visa" and finished_event["last4"] == card[-4:]
    digits = [e for e in masked_capture_events(live, capture_id) if e.get("stage") == "digit"]
    assert [e["count"] for e in digits if e["field"] == "card_number"] == \
        list(range(1, len(card) + 1))
    assert all(e["dots"] == "•" * int(e["count"]) for e in digits)
    assert {e.get("brand") for e in digits if e["field"] == "card_number"
            and e["count"] >= 6} == {"visa"}  # the brand once the IIN is known
    stored = await desk.wait_capture(capture_id, "captured")
    assert stored["fields"]["card_number"] == {"brand": "visa", "last4": card[-4:],
                                               "length": 16, "valid": True}
    assert set(stored["vault_refs"]) == {"card_number", "expiry"}  # no CVV, ever
    leaks.check([card, cvv, exp + cvv, card[:-4]], live)


# --- the keypad trigger; Amex and its 4-digit CVV ---------------------------------------------

async def test_agent_keypad_star1_captures_an_amex_card_with_a_four_digit_cvv(
        product: Product, carrier: Carrier, agents: AgentPhones, ari_a: aiohttp.ClientSession,
        register_secret: Callable[[str], None]) -> None:
    card, exp, cvv = amex(), expiry(2), rare_number(4)
    for value in (card, cvv):
        register_secret(value)
    leaks = Leaks(product)
    async with connected_call(product.desk, carrier, agents, ari_a, product.sse_dir) as live:
        await asyncio.sleep(0.5)
        await agents.send_dtmf(AGENT, "*1")
        requested = await live.sse.wait(lambda e: e.get("topic") == "capture"
                                        and e.get("stage") == "requested", timeout=10)
        assert requested["requested_by"] == "agent-keypad"
        capture_id = str(requested["capture_id"])
        await type_fields(live, capture_id, [("card_number", card + "#"), ("expiry", exp),
                                             ("cvv", cvv)])
        finished = await live.sse.wait_stage(capture_id, "finished")
        leaks.take_variables(live)
        await asyncio.sleep(1.0)
    assert finished["result"] == "captured"
    assert finished["brand"] == "amex" and finished["last4"] == card[-4:]
    cvv_done = [e for e in live.sse.capture_events(capture_id)
                if e.get("stage") == "field_done" and e.get("field") == "cvv"]
    assert cvv_done and cvv_done[0]["count"] == 4
    assert live.agent.dtmf == []
    stored = await product.desk.wait_capture(capture_id, "captured")
    assert "cvv" not in stored["vault_refs"]
    leaks.check([card, cvv], live)


async def test_bank_account_capture_vaults_the_iban_and_shows_only_its_tail(
        product: Product, carrier: Carrier, agents: AgentPhones, ari_a: aiohttp.ClientSession,
        register_secret: Callable[[str], None]) -> None:
    iban_digits = german_iban_digits()
    for value in ("DE" + iban_digits, iban_digits):
        register_secret(value)
    leaks = Leaks(product)
    async with connected_call(product.desk, carrier, agents, ari_a, product.sse_dir) as live:
        capture_id = await product.desk.request_capture(live.call_id, ["iban"])
        await type_fields(live, capture_id, [("iban", iban_digits)])
        finished = await live.sse.wait_stage(capture_id, "finished")
        leaks.take_variables(live)
    assert finished["result"] == "captured"
    stored = await product.desk.wait_capture(capture_id, "captured")
    assert stored["fields"]["iban"]["country"] == "DE"
    assert stored["fields"]["iban"]["last4"] == iban_digits[-2:]
    assert list(stored["vault_refs"]) == ["iban"]
    assert live.agent.dtmf == []
    leaks.check(["DE" + iban_digits, iban_digits, iban_digits[2:]], live)


# --- validation -----------------------------------------------------------------------------------

async def test_invalid_luhn_is_reprompted_then_the_capture_ends_invalid(
        product: Product, carrier: Carrier, agents: AgentPhones,
        ari_a: aiohttp.ClientSession) -> None:
    bad = break_luhn(visa())
    async with connected_call(product.desk, carrier, agents, ari_a, product.sse_dir) as live:
        capture_id = await product.desk.request_capture(live.call_id, ["card_number"])
        await type_fields(live, capture_id, [("card_number", bad + "#")])
        first = await live.sse.wait_stage(capture_id, "field_invalid", attempt=1)
        assert first["reason_id"] == "luhn"
        await asyncio.sleep(1.0)  # "invalid entry, please enter your card number"
        await live.carrier.send_dtmf(bad + "#")
        second = await live.sse.wait_stage(capture_id, "field_invalid", attempt=2)
        assert second["reason_id"] == "luhn"
        finished = await live.sse.wait_stage(capture_id, "finished")
        assert finished["result"] == "invalid"
        done = live.mark("finished")
        await asyncio.sleep(4.0)  # "capture cancelled" + beep, then back to the agent
        await send_tone(live.carrier)
        await asyncio.sleep(0.5)
        wav = await finish_agent_recording(agents)
    stored = await product.desk.wait_capture(capture_id, "invalid")
    assert stored["vault_refs"] == {}
    runs = tone_runs(wav, 1000)
    assert any(start > done - live.agent_t0 for start, _ in runs), runs  # conversation again
    assert live.agent.dtmf == []


async def test_an_expired_card_is_refused(
        product: Product, carrier: Carrier, agents: AgentPhones,
        ari_a: aiohttp.ClientSession) -> None:
    card = visa()
    async with connected_call(product.desk, carrier, agents, ari_a, product.sse_dir) as live:
        capture_id = await product.desk.request_capture(live.call_id, ["card_number", "expiry"])
        await type_fields(live, capture_id, [("card_number", card + "#"),
                                             ("expiry", past_expiry())])
        refused = await live.sse.wait_stage(capture_id, "field_invalid", field="expiry")
        assert refused["reason_id"] == "expired"
        await asyncio.sleep(1.0)
        await live.carrier.send_dtmf(past_expiry())
        finished = await live.sse.wait_stage(capture_id, "finished")
    assert finished["result"] == "invalid"
    assert (await product.desk.wait_capture(capture_id))["state"] == "invalid"


# --- hang-ups mid-capture ---------------------------------------------------------------------

async def test_caller_hanging_up_mid_capture_discards_the_digits_and_records_hangup(
        product: Product, carrier: Carrier, agents: AgentPhones,
        ari_a: aiohttp.ClientSession) -> None:
    card = visa()
    async with connected_call(product.desk, carrier, agents, ari_a, product.sse_dir) as live:
        capture_id = await product.desk.request_capture(live.call_id, CARD)
        await type_fields(live, capture_id, [("card_number", card[:8])])
        await live.sse.wait(lambda e: e.get("stage") == "digit" and e.get("count") == 8)
        await live.carrier.hangup()
        finished = await live.sse.wait_stage(capture_id, "finished")
        assert finished["result"] == "hangup" and finished["reason"] == "caller_left"
    await agents.wait_hangup(AGENT, timeout=10)  # the agent's leg ends with the call
    stored = await product.desk.wait_capture(capture_id, "hangup")
    assert stored["vault_refs"] == {} and stored["fields"] == {}
    assert card[:8] not in product.proc.log_text()


async def test_agent_hanging_up_mid_capture_tells_the_caller_then_returns_to_the_dialplan(
        product: Product, carrier: Carrier, agents: AgentPhones,
        ari_a: aiohttp.ClientSession) -> None:
    async with connected_call(product.desk, carrier, agents, ari_a, product.sse_dir) as live:
        capture_id = await product.desk.request_capture(live.call_id, CARD)
        await type_fields(live, capture_id, [("card_number", visa()[:6])])
        await live.sse.wait(lambda e: e.get("stage") == "digit" and e.get("count") == 6)
        left = time.monotonic()
        await agents.hangup(AGENT)
        finished = await live.sse.wait_stage(capture_id, "finished")
        assert finished["result"] == "cancelled" and finished["reason"] == "agent_left"
        # "the agent has left" plays, then [capture] on_agent_hangup = continue: the
        # dialplan goes on after Stasis() (2100: Wait(60)); the caller is never cut off.
        async with asyncio.timeout(20):
            while True:
                async with ari_a.get(f"/ari/channels/{live.call_id}") as resp:
                    channel = await resp.json()
                if channel["dialplan"]["app_name"] == "Wait":
                    break
                await asyncio.sleep(0.1)
        assert time.monotonic() - left > 1.0  # the prompt played first
        assert await live.carrier.state() == "Up"
    stored = await product.desk.wait_capture(capture_id, "cancelled")
    assert stored["vault_refs"] == {}


# --- the API's refusals and cancel ------------------------------------------------------------

async def test_second_request_conflicts_and_cancel_returns_the_caller_to_the_agent(
        product: Product, carrier: Carrier, agents: AgentPhones,
        ari_a: aiohttp.ClientSession) -> None:
    desk = product.desk
    async with connected_call(desk, carrier, agents, ari_a, product.sse_dir) as live:
        status, body = await desk.call("POST", f"/api/v1/calls/{live.call_id}/captures",
                                       {"fields": ["card_number", "pin"]})
        assert status == 422
        capture_id = await desk.request_capture(live.call_id, CARD)
        await live.sse.wait_stage(capture_id, "started")
        status, body = await desk.call("POST", f"/api/v1/calls/{live.call_id}/captures",
                                       {"fields": ["iban"]})
        assert (status, body["error_id"]) == (409, "capture_running")
        status, body = await desk.call(
            "DELETE", f"/api/v1/calls/{live.call_id}/captures/{capture_id}")
        assert status == 200, body
        finished = await live.sse.wait_stage(capture_id, "finished")
        assert finished["result"] == "cancelled"
        async with ari_a.get(f"/ari/bridges/callsec-call-{live.call_id}") as resp:
            bridge = await resp.json()
        assert live.call_id in bridge["channels"] and len(bridge["channels"]) == 2
    assert (await desk.wait_capture(capture_id, "cancelled"))["vault_refs"] == {}
