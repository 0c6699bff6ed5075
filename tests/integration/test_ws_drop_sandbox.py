"""The ARI link dropped in the middle of calls, on real SIP calls; the channels stay in Asterisk.

``callsec run`` reaches A's ARI through a TCP proxy (tests/harness/tcpproxy.py). An outage cuts
every connection, the events websocket included, and refuses new ones for 3 s: Asterisk keeps
the channels in Stasis and drops the events it raises meanwhile (keys typed then are lost).
callsec logs the drop, reconnects with backoff and resynchronises:

- a caller typing the code is asked for it again: nothing typed before counts, no attempt is
  spent, the code then typed verifies;
- a caller in a bridge-mode capture is given back to the agent: the capture is cancelled
  (reason ``reconnect``), the caller's audio reaches the agent again, recordings are unmuted,
  nothing typed is kept anywhere;
- both at once in the same outage.

Verification is on (``require_code = always``): 1000 runs ``Stasis(callsec,verify)``; 2100
(MixMonitor, then ``Stasis(callsec,connect,PJSIP/agent100)``) verifies, then connects.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from tests.harness.agent import AgentPhones
from tests.harness.ari import AriClient
from tests.harness.callsec_proc import code_from
from tests.harness.carrier import Carrier, CarrierCall
from tests.harness.sandbox import A_ARI_PORT, Sandbox
from tests.harness.tcpproxy import TcpProxy
from tests.integration.capture_checks import LogTail, find_leaks, sqlite_dump, tone_runs
from tests.integration.capture_env import (
    AGENT,
    Product,
    SseRecorder,
    a_channel,
    running_product,
    send_tone,
    visa,
)
from tests.integration.test_restart_sandbox import bridge, capture_row, destroy_leftovers, wait_log
from tests.integration.test_verification_sandbox import fresh_mobile, wait_var

pytestmark = pytest.mark.sandbox
OUTAGE = 3.0


@dataclass
class Run:
    product: Product
    proxy: TcpProxy
    timings: dict[str, float] = field(default_factory=dict)

    def since(self, mark: str) -> float:
        return round(time.monotonic() - self.timings[mark], 2)


@pytest.fixture(scope="module")
async def run(sandbox: Sandbox) -> AsyncIterator[Run]:
    async with TcpProxy(A_ARI_PORT) as proxy, running_product("ws-drop", env={
            "CALLSEC_ARI__URLS": proxy.url,
            "CALLSEC_POLICY_DEFAULT__REQUIRE_CODE": "always",
            "CALLSEC_VERIFICATION__FIRST_DIGIT_TIMEOUT_SECONDS": "15",
            # longer than the outage and the reconnect: the digits typed before the drop are
            # still in the entry when the link comes back (a timeout would discard them anyway)
            "CALLSEC_VERIFICATION__INTER_DIGIT_TIMEOUT_SECONDS": "10",
            "CALLSEC_ARI__RECONNECT_MAX_SECONDS": "4"}) as product:
        yield Run(product, proxy)


def verification_rows(product: Product, call_id: str) -> list[dict[str, Any]]:
    with sqlite3.connect(f"file:{product.workdir / 'callsec.db'}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(
            "SELECT result, attempts, sends, finished_at FROM verifications WHERE call_id = ? "
            "ORDER BY started_at", (call_id,))]


async def outage(run: Run, *, while_down: Callable[[], Awaitable[None]],
                 seconds: float = OUTAGE) -> dict[str, float]:
    """Cut the link for ``seconds``, run ``while_down`` meanwhile, and wait until callsec has
    reconnected and resynchronised; how long each step took."""
    tail = LogTail(run.product.proc.log_file)
    start = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(run.proxy.outage(seconds))
        await asyncio.sleep(0.3)
        await while_down()
    await wait_log(tail, "events websocket down", timeout=5)
    await wait_log(tail, "events websocket reconnected", timeout=30)
    reconnected = run.timings["reconnected"] = time.monotonic()
    await wait_log(tail, "resynchronised", timeout=10)
    return {"outage_s": seconds, "reconnected_after_s": round(reconnected - start, 2),
            "reconnected_after_accepting_s": round(reconnected - run.proxy.accepting_since, 2)}


# --- a caller typing the code -------------------------------------------------------------------

@dataclass
class Verifying:
    call: CarrierCall
    call_id: str
    code: str


async def verifying(run: Run, carrier: Carrier, ari_a: aiohttp.ClientSession,
                    exten: str = "1000") -> Verifying:
    """A known caller whose code went out; the first three digits typed (and heard)."""
    proc = run.product.proc
    mobile = fresh_mobile()
    proc.add_customer(name="Verbindung Weg", mobile=mobile)
    before = len(proc.outbox_messages())
    call = await carrier.call(exten, caller_id=mobile)
    await call.wait_up(timeout=15)
    code = code_from(await proc.wait_message(before + 1))
    call_id = str((await a_channel(ari_a, mobile, exten))["id"])
    await asyncio.sleep(1.0)
    await call.send_dtmf(code[:3])
    return Verifying(call, call_id, code)


async def verified_after_reconnect(run: Run, v: Verifying, ari_a: aiohttp.ClientSession) -> float:
    """The caller hears "please enter the code" again and types it; seconds to the result."""
    await asyncio.sleep(0.8)  # the re-prompt starts; the first key interrupts it
    typed = time.monotonic()
    await v.call.send_dtmf(v.code + "#")
    assert await wait_var(ari_a, v.call_id, "CALLSEC_RESULT") == "verified"
    return round(time.monotonic() - typed, 2)


def assert_one_attempt(run: Run, v: Verifying) -> None:
    rows = verification_rows(run.product, v.call_id)
    assert [(r["result"], r["attempts"], r["sends"]) for r in rows] == [("verified", 1, 1)]


async def test_caller_typing_the_code_during_a_drop_is_re_prompted_and_verified_first_time(
        run: Run, carrier: Carrier, ari_a: aiohttp.ClientSession,
        register_secret: Callable[[str], None]) -> None:
    v = await verifying(run, carrier, ari_a)
    register_secret(v.code)
    took = await outage(run, while_down=lambda: v.call.send_dtmf(v.code[3:] + "#"))
    took["verified_after_typing_s"] = await verified_after_reconnect(run, v, ari_a)
    print("fault a: verification during a websocket drop:", json.dumps(took))
    assert_one_attempt(run, v)  # the keys lost in the outage spent no attempt
    assert run.proxy.dropped >= 1
    await v.call.hangup()
    assert v.code not in run.product.proc.log_text()


# --- a caller in a capture ------------------------------------------------------------------------

@dataclass
class Capturing:
    call: CarrierCall
    call_id: str
    capture_id: str
    typed: str
    agent_t0: float
    sse: SseRecorder
    reader: asyncio.Task[None]
    log: LogTail  # callsec's log since the capture was requested


async def capturing(run: Run, carrier: Carrier, agents: AgentPhones,
                    ari_a: aiohttp.ClientSession, tg: asyncio.TaskGroup) -> Capturing:
    """A verified caller connected to agent100, in a card capture with 8 digits typed."""
    v = await verifying(run, carrier, ari_a, exten="2100")
    await v.call.send_dtmf(v.code[3:] + "#")
    await agents.wait_ringing(AGENT, timeout=25)
    agent_t0 = time.monotonic()
    desk = run.product.desk
    await desk.wait_state(v.call_id, "connected")
    sse = SseRecorder(desk, v.call_id, run.product.sse_dir / f"{v.call_id}.sse")
    reader = tg.create_task(sse.run())
    await sse.wait(lambda e: e.get("call_id") == v.call_id, timeout=5)
    log = LogTail(run.product.proc.log_file)
    capture_id = await desk.request_capture(v.call_id, ["card_number", "expiry", "cvv"])
    await sse.wait_stage(capture_id, "field_started", field="card_number")
    await asyncio.sleep(0.4)
    typed = visa()[:12]
    await v.call.send_dtmf(typed[:8], between_ms=100, duration_ms=100)
    await sse.wait(lambda e: e.get("stage") == "digit" and e.get("count") == 8)
    return Capturing(v.call, v.call_id, capture_id, typed, agent_t0, sse, reader, log)


async def hang_up(cap: Capturing, ari_a: aiohttp.ClientSession) -> None:
    await cap.call.hangup()
    try:
        async with asyncio.timeout(10):
            await cap.reader  # the stream ends with the call
    except TimeoutError:
        cap.reader.cancel()
    await destroy_leftovers(ari_a, cap.call_id)


async def cancelled(run: Run, cap: Capturing) -> dict[str, float]:
    """After the reconnect the capture ends: cancelled, reason ``reconnect``, nothing shown."""
    finished = await cap.sse.wait_stage(cap.capture_id, "finished", timeout=15)
    run.timings["given_back"] = time.monotonic()
    assert (finished["result"], finished.get("reason")) == ("cancelled", "reconnect")
    assert "last4" not in finished and "brand" not in finished
    return {"capture_cancelled_after_reconnect_s":
            round(run.timings["given_back"] - run.timings["reconnected"], 2)}


async def back_with_agent(run: Run, cap: Capturing, agents: AgentPhones,
                          ari_a: aiohttp.ClientSession) -> None:
    """Back in the agent's bridge, recordings unmuted, the caller's audio reaches the agent."""
    back_at = run.timings["given_back"]
    async with asyncio.timeout(10):
        while await bridge(ari_a, f"callsec-capture-{cap.call_id}") is not None:
            await asyncio.sleep(0.2)
    call_bridge = await bridge(ari_a, f"callsec-call-{cap.call_id}")
    assert call_bridge is not None
    assert sorted(call_bridge["channels"]) == sorted([cap.call_id, f"{cap.call_id}-agent"])
    await wait_log(cap.log, "recordings of the caller unmuted: 1", timeout=10)
    await asyncio.sleep(max(0.0, back_at + 4.0 - time.monotonic()))  # "capture cancelled" +
    await send_tone(cap.call)  # beep suspend the caller from the bridge for about 3 s
    await asyncio.sleep(0.8)
    wav = await agents.finish_recording(AGENT, timeout=15)
    async with asyncio.timeout(5):
        while not wav.exists():
            await asyncio.sleep(0.1)
    runs = tone_runs(wav, 1000)
    assert any(start > back_at - cap.agent_t0 for start, _ in runs), runs  # caller -> agent
    assert agents.latest(AGENT).dtmf == []


async def nothing_kept(run: Run, cap: Capturing) -> None:
    status, info = await run.product.desk.call("GET", f"/api/v1/captures/{cap.capture_id}")
    assert status == 200 and info["state"] == "cancelled", info
    row = capture_row(run.product, cap.capture_id)
    assert row["result"] == "cancelled" and row["finished_at"] is not None
    assert json.loads(row["vault_refs"]) == {} and json.loads(row["masked"]) == {}
    assert [a["reason"] for a in row["audit"]] == ["reconnect"]
    blobs = {"database": sqlite_dump(run.product.workdir / "callsec.db"),
             "callsec log": run.product.proc.log_file.read_bytes(),
             "sse": cap.sse.path.read_bytes()}
    assert find_leaks([cap.typed, cap.typed[:8]], blobs) == []


async def test_caller_in_a_capture_during_a_drop_is_given_back_to_the_agent_keeping_nothing(
        run: Run, carrier: Carrier, agents: AgentPhones, ari_a: aiohttp.ClientSession,
        register_secret: Callable[[str], None]) -> None:
    async with asyncio.TaskGroup() as tg:
        cap = await capturing(run, carrier, agents, ari_a, tg)
        register_secret(cap.typed)
        try:
            took = await outage(run, while_down=lambda: cap.call.send_dtmf(cap.typed[8:]))
            took |= await cancelled(run, cap)
            await back_with_agent(run, cap, agents, ari_a)
            print("fault b: capture during a websocket drop:", json.dumps(took))
            await nothing_kept(run, cap)
        finally:
            await hang_up(cap, ari_a)


async def test_one_caller_verifying_and_one_capturing_survive_the_same_drop(
        run: Run, carrier: Carrier, agents: AgentPhones, ari_a: aiohttp.ClientSession,
        register_secret: Callable[[str], None]) -> None:
    async with asyncio.TaskGroup() as tg:
        cap = await capturing(run, carrier, agents, ari_a, tg)
        register_secret(cap.typed)
        try:
            v = await verifying(run, carrier, ari_a)
            register_secret(v.code)

            async def both_type() -> None:
                async with asyncio.TaskGroup() as keys:
                    keys.create_task(v.call.send_dtmf(v.code[3:] + "#"))
                    keys.create_task(cap.call.send_dtmf(cap.typed[8:]))

            took = await outage(run, while_down=both_type)
            took |= await cancelled(run, cap)
            took["verified_after_typing_s"] = await verified_after_reconnect(run, v, ari_a)
            await back_with_agent(run, cap, agents, ari_a)
            print("fault c: verification + capture in one drop:", json.dumps(took))
            assert_one_attempt(run, v)
            await nothing_kept(run, cap)
            await v.call.hangup()
        finally:
            await hang_up(cap, ari_a)


async def test_a_capture_that_timed_out_during_a_long_drop_still_returns_the_caller(
        run: Run, carrier: Carrier, agents: AgentPhones, ari_a: aiohttp.ClientSession,
        register_secret: Callable[[str], None]) -> None:
    """22 s without Asterisk: the entry times out twice (6 s, then 12 s) and the capture ends
    while callsec cannot move the caller; once the link is back it does."""
    async with asyncio.TaskGroup() as tg:
        cap = await capturing(run, carrier, agents, ari_a, tg)
        register_secret(cap.typed)
        try:
            took = await outage(run, while_down=lambda: asyncio.sleep(0), seconds=22.0)
            finished = await cap.sse.wait_stage(cap.capture_id, "finished", timeout=5)
            assert finished["result"] == "timeout"  # decided while the link was down
            run.timings["given_back"] = run.timings["reconnected"]
            await back_with_agent(run, cap, agents, ari_a)
            print("fault d: capture timing out in a 22 s drop:", json.dumps(took))
            row = capture_row(run.product, cap.capture_id)
            assert row["result"] == "timeout" and json.loads(row["vault_refs"]) == {}
            blobs = {"database": sqlite_dump(run.product.workdir / "callsec.db"),
                     "callsec log": run.product.proc.log_file.read_bytes()}
            assert find_leaks([cap.typed[:8]], blobs) == []
        finally:
            await hang_up(cap, ari_a)


# --- the app registration lost while the websocket stays up ---------------------------------------

async def test_app_removed_under_an_open_websocket_is_registered_again_and_calls_go_on(
        run: Run, sandbox: Sandbox, carrier: Carrier, ari_a: aiohttp.ClientSession,
        register_secret: Callable[[str], None]) -> None:
    """Another client takes the name ``callsec`` for a moment ("Replacing Stasis app") and
    leaves: Asterisk removes the app while callsec's websocket stays open and silent, and every
    ``Stasis(callsec,...)`` would fail with "Stasis app doesn't exist". callsec notices when its
    events go quiet (``app_check_seconds``, 5 s), reconnects, and the next caller is verified."""
    tail = LogTail(run.product.proc.log_file)
    dropped_before = run.proxy.dropped
    async with AriClient(sandbox.a, ["callsec"]):  # straight to A, not through the proxy
        await asyncio.sleep(0.5)
    gone = time.monotonic()
    await wait_log(tail, "Asterisk no longer has app callsec", timeout=15)
    await wait_log(tail, "events websocket reconnected", timeout=15)
    took = {"reregistered_after_s": round(time.monotonic() - gone, 2)}
    assert run.proxy.dropped == dropped_before  # the link itself never failed
    async with ari_a.get("/ari/applications/callsec") as resp:
        assert resp.status == 200
    v = await verifying(run, carrier, ari_a)
    register_secret(v.code)
    await v.call.send_dtmf(v.code[3:] + "#")
    assert await wait_var(ari_a, v.call_id, "CALLSEC_RESULT") == "verified"
    print("fault e: app registration removed under an open websocket:", json.dumps(took))
    await v.call.hangup()


# --- keys that reach callsec late and all at once -----------------------------------------------

async def test_keys_that_reach_callsec_late_and_in_one_burst_all_count(
        run: Run, carrier: Carrier, agents: AgentPhones, ari_a: aiohttp.ClientSession,
        register_secret: Callable[[str], None]) -> None:
    """The link to Asterisk stalls (nothing lost, nothing cut) while the caller types a card
    number full of repeated digits; the keys reach callsec seconds late, milliseconds apart.
    Asterisk's own timestamps keep a repeated key a repeated key: the card is captured whole
    (with arrival times, or a 2 s clamp on Asterisk's, the repeated 1s were taken for one)."""
    card = "4111111111111111"  # the test card: eleven 1s in a row
    register_secret(card)
    dropped_before = run.proxy.dropped
    async with asyncio.TaskGroup() as tg:
        v = await verifying(run, carrier, ari_a, exten="2100")
        await v.call.send_dtmf(v.code[3:] + "#")
        await agents.wait_ringing(AGENT, timeout=25)
        desk = run.product.desk
        await desk.wait_state(v.call_id, "connected")
        sse = SseRecorder(desk, v.call_id, run.product.sse_dir / f"{v.call_id}.sse")
        reader = tg.create_task(sse.run())
        try:
            await sse.wait(lambda e: e.get("call_id") == v.call_id, timeout=5)
            capture_id = await desk.request_capture(v.call_id, ["card_number"])
            await sse.wait_stage(capture_id, "field_started", field="card_number")
            await asyncio.sleep(0.4)
            async with run.proxy.stalled():
                typed = time.monotonic()
                await v.call.send_dtmf(card + "#", between_ms=100, duration_ms=100)
                await asyncio.sleep(1.0)
                stalled_s = round(time.monotonic() - typed, 2)
            stored = await desk.wait_capture(capture_id, "captured", timeout=20)
            print("fault f: keys late and in one burst:", json.dumps({"stalled_s": stalled_s}))
            assert stalled_s > 3.0  # longer than the old clamp: every key arrived > 2 s late
            assert stored["fields"]["card_number"]["last4"] == "1111"
            assert stored["fields"]["card_number"]["length"] == 16
            assert run.proxy.dropped == dropped_before  # the link was slow, never cut
        finally:
            await v.call.hangup()
            try:
                async with asyncio.timeout(10):
                    await reader
            except TimeoutError:
                reader.cancel()
            await destroy_leftovers(ari_a, v.call_id)


async def test_app_left_inactive_under_an_open_websocket_is_found_by_the_liveness_probe(
        run: Run, sandbox: Sandbox, carrier: Carrier, ari_a: aiohttp.ClientSession,
        register_secret: Callable[[str], None]) -> None:
    """As above, but a caller is in the app: Asterisk keeps the app for the caller's channel,
    inactive ("Stasis app 'callsec' not active" for new calls), so it is still listed. callsec
    sends itself a user event when its events go quiet; unanswered, it reconnects, resyncs, and
    the waiting caller is asked for the code again and verified."""
    proc = run.product.proc
    mobile = fresh_mobile()
    proc.add_customer(name="Stille Leitung", mobile=mobile)
    before = len(proc.outbox_messages())
    tail = LogTail(proc.log_file)
    call = await carrier.call("1000", caller_id=mobile)
    await call.wait_up(timeout=15)
    code = code_from(await proc.wait_message(before + 1))
    register_secret(code)
    v = Verifying(call, str((await a_channel(ari_a, mobile, "1000"))["id"]), code)
    async with AriClient(sandbox.a, ["callsec"]):  # straight to A: takes the name, then leaves
        await asyncio.sleep(0.5)
    gone = time.monotonic()
    async with ari_a.get("/ari/applications/callsec") as resp:
        assert resp.status == 200  # still listed: it holds the caller's channel
    await wait_log(tail, "liveness probe unanswered", timeout=20)
    await wait_log(tail, "events websocket reconnected", timeout=15)
    took = {"reconnected_after_s": round(time.monotonic() - gone, 2)}
    await wait_log(tail, "resynchronised", timeout=10)
    took["verified_after_typing_s"] = await verified_after_reconnect(run, v, ari_a)
    print("fault g: app inactive under an open websocket:", json.dumps(took))
    await call.hangup()
