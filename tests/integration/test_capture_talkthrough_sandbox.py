"""Talk-through capture on real SIP calls: carrier B calls A's 2100 (MixMonitor, then
``Stasis(callsec,connect,PJSIP/agent100)``), the agent asks for the card over the API with
``"mode": "talk_through"``, and caller and agent keep talking while the caller types.

Both keep "talking" all the time: each side whispers its own test voice signal (speech-shaped
noise, see ``talkthrough_checks``) into what its phone sends. B records what the agent's phone
and what the caller's phone receive. The agent's recording must hold the caller's voice
throughout the capture and no key tone (an independent Goertzel scan, ``tests/harness``); the
caller's recording must hold the agent's voice; the relay's signed evidence must say no tone
frame reached the agent side. The added one-way delay caller -> agent is the lag of the caller's
voice in the agent's recording during the capture minus its lag in the plain bridge before it.

Correlation thresholds (normalised cross-correlation, best lag, per window). Chance: for an
unrelated signal it is about N(0, 1/sqrt(n)), 0.011 over 1 s and 0.016 over 0.5 s windows. The
voice passes μ-law twice (B -> A, A -> B: about 38 dB SNR, above 0.99 on its own):

- talk-through with nobody typing and no prompt (after the first prompt, before the first key):
  > 0.9 -- the relay passes the caller's voice intact (measured: 1.000);
- the whole capture, caller -> agent, median of 0.5 s windows: > 0.3. While keys are typed the
  voice that overlaps them cannot reach the agent: in-band keys of 160 ms every 320 ms are
  flattened with one frame of hang-over each side, about 60 % of the typing time, leaving about
  40 % of the voice energy (sqrt(0.4) ~ 0.63 at best; Asterisk drops RFC 4733 callers' audio
  during each digit the same way); the field prompts are mixed in on purpose. 0.3 is still
  about 19 standard deviations above chance;
- the whole capture, agent -> caller (nothing filtered, prompts mixed in): median > 0.5.

Nothing left behind (hang-ups, cancel, SIGKILL + restart): no ``UnicastRTP`` channel and no
capture bridge in A (ARI ``GET /channels``, ``GET /bridges``), no UDP socket of callsec
(``ss -uanp`` by pid).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from callsec_ari.capture.media_service import evidence_key
from callsec_ari.config_check import load_settings
from callsec_ari.media.evidence import verify_evidence
from callsec_ari.store.crypto import Keyring
from tests.harness.agent import AgentPhones
from tests.harness.carrier import Carrier
from tests.harness.sandbox import Sandbox, dtmf_mode
from tests.integration.capture_checks import dtmf_hits, find_leaks, sqlite_dump
from tests.integration.capture_env import (
    AGENT,
    Desk,
    LiveCall,
    Product,
    SseRecorder,
    a_channel,
    connected_call,
    expiry,
    fresh_caller,
    rare_number,
    running_product,
    visa,
)
from tests.integration.talkthrough_checks import (
    Monitor,
    Whisper,
    capture_bridges,
    correlation_over,
    udp_sockets,
    unicast_channels,
    wait_clean,
    write_reference,
)

pytestmark = pytest.mark.sandbox
CARD = ("card_number", "expiry", "cvv")
MIN_CORRELATION = 0.5
TYPING_CORRELATION = 0.3
QUIET_CORRELATION = 0.9
#: The monitor mixes both voices at equal levels, so each explains half its energy (about
#: 0.7); over 0.5 s windows chance is N(0, 0.016): 0.3 is far above it.
MIN_MONITOR_CORRELATION = 0.3
#: ``sound:callsec/enter-card-number`` lasts 3.64 s.
PROMPT_SECONDS = 3.7
MAX_ADDED_DELAY = 0.060
VOICE_SECONDS = 90.0


async def request_talk_through(desk: Desk, call_id: str, fields: Sequence[str]) -> str:
    status, data = await desk.call("POST", f"/api/v1/calls/{call_id}/captures",
                                   {"fields": list(fields), "mode": "talk_through"})
    assert status == 201, (status, data)
    return str(data["capture_id"])


async def start_capture(live: LiveCall, desk: Desk, fields: Sequence[str] = CARD) -> str:
    capture_id = await request_talk_through(desk, live.call_id, fields)
    await live.sse.wait_stage(capture_id, "started", timeout=10)
    return capture_id


def pid(product: Product) -> int:
    assert product.proc.proc is not None
    return product.proc.proc.pid


def verified(product: Product, signed: dict[str, Any]) -> bool:
    settings = load_settings(product.proc.config, env=product.proc.env())
    return verify_evidence(signed, evidence_key(Keyring.from_settings(settings).audit_key()))


class Talk:
    """Both sides whisper their voice signal; B records what each phone receives."""

    def __init__(self, live: LiveCall, carrier: Carrier, agents: AgentPhones) -> None:
        self.live, self.agents = live, agents
        self.caller_voice = Whisper(carrier.client, live.carrier.id)
        self.agent_voice = Whisper(agents.client, live.agent.channel.id)
        self.caller_wav: Path | None = None
        self.name = f"tt-caller-{live.call_id}"
        self.monitor = Monitor(agents.client, f"tt-monitor-{live.call_id}")
        self.monitor_wav: Path | None = None

    async def start(self) -> None:
        self.caller_wav = await self.live.carrier.record(self.name, spy="in")
        self.monitor_wav = await self.monitor.start(self.live.agent.channel.id,
                                                    self.live.carrier.id)
        self.live.mark("monitor")
        await self.caller_voice.start("tt-voice-caller")
        await self.agent_voice.start("tt-voice-agent")

    async def type_fields(self, capture_id: str, entries: Sequence[tuple[str, str]],
                          tone_ms: int = 120) -> None:
        for name, keys in entries:
            await self.live.sse.wait_stage(capture_id, "field_started", field=name)
            await asyncio.sleep(0.4)
            await self.live.carrier.send_dtmf(keys, between_ms=tone_ms, duration_ms=tone_ms)
            await self.caller_voice.keep_writing()  # DTMF ended the silence generator

    async def finish(self) -> tuple[Path, Path, Path]:
        await self.caller_voice.stop()
        await self.agent_voice.stop()
        await self.monitor.stop()
        agent_wav = await self.agents.finish_recording(AGENT, timeout=15)
        await self.live.carrier.stop_recording(self.name, timeout=15)
        assert self.caller_wav is not None and self.monitor_wav is not None
        for path in (agent_wav, self.caller_wav, self.monitor_wav):
            async with asyncio.timeout(5):
                while not path.exists():
                    await asyncio.sleep(0.1)
        return agent_wav, self.caller_wav, self.monitor_wav


def window_stats(rows: list[tuple[float, float, float]],
                 least: float = MIN_CORRELATION) -> tuple[float, float]:
    """(median correlation, median lag of the windows above ``least``)."""
    corr = statistics.median(c for _, c, _ in rows)
    good = [lag for _, c, lag in rows if c > least]
    return corr, statistics.median(good) if good else float("nan")


async def talk_through_card(product: Product, carrier: Carrier, agents: AgentPhones,
                            ari_a: aiohttp.ClientSession, register_secret: Callable[[str], None],
                            tone_ms: int) -> dict[str, Any]:
    """One card capture with both sides talking; what the tests assert on."""
    card, exp, cvv = visa(), expiry(), rare_number(3)
    register_secret(card)
    refs = {"caller": write_reference("tt-voice-caller", VOICE_SECONDS, seed=11),
            "agent": write_reference("tt-voice-agent", VOICE_SECONDS, seed=22)}
    desk = product.desk
    async with connected_call(desk, carrier, agents, ari_a, product.sse_dir) as live:
        talk = Talk(live, carrier, agents)
        await talk.start()
        t0 = live.mark("voice")
        await asyncio.sleep(5.0)  # plain bridge: the baseline delay
        capture_id = await start_capture(live, desk)
        started = live.mark("started")
        during = (await unicast_channels(ari_a), udp_sockets(pid(product)))
        # talking through, nobody types yet: the first prompt (3.6 s) plays into the capture
        # bridge, then 1.5 s of plain talk-through: the delay windows
        await asyncio.sleep(PROMPT_SECONDS + 1.9)
        live.mark("typing")
        await talk.type_fields(capture_id, [("card_number", card + "#"), ("expiry", exp),
                                            ("cvv", cvv)], tone_ms=tone_ms)
        finished_event = await live.sse.wait_stage(capture_id, "finished", timeout=30)
        finished = live.mark("finished")
        evidence_event = await live.sse.wait_stage(capture_id, "evidence", timeout=10)
        await asyncio.sleep(4.0)  # "capture complete" + beep to both, then talking again
        agent_wav, caller_wav, monitor_wav = await talk.finish()
        clean = await wait_clean(ari_a, pid(product))
    stored = await desk.wait_capture(capture_id, "captured")
    blobs = {"callsec log": product.proc.log_file.read_bytes(),
             "database": sqlite_dump(product.workdir / "callsec.db"),
             "sse": live.sse.path.read_bytes()}
    # WAV time of the marks: the agent's recording began at agent_t0, the caller's at ~t0
    at = {k: v - live.agent_t0 for k, v in live.marks.items()}
    mon = {k: v - live.marks["monitor"] for k, v in live.marks.items()}
    return {"live": live, "finished": finished_event, "evidence_event": evidence_event,
            "stored": stored, "card": card, "during": during, "clean": clean,
            "leaks": find_leaks([card, cvv, exp + cvv, card[:-4]], blobs),
            "agent_hits": dtmf_hits(agent_wav),
            "before": correlation_over(agent_wav, refs["caller"], at["voice"] + 1.0,
                                       at["started"] - 0.5),
            "during_agent": correlation_over(agent_wav, refs["caller"], at["started"] + 0.3,
                                             at["finished"], window=0.5),
            "during_caller": correlation_over(caller_wav, refs["agent"],
                                              started - t0 + 0.3, finished - t0, window=0.5),
            "delay_before": correlation_over(monitor_wav, refs["caller"], mon["voice"] + 1.0,
                                             mon["started"] - 0.3, window=0.5),
            "delay_during": correlation_over(monitor_wav, refs["caller"],
                                             mon["started"] + PROMPT_SECONDS + 0.3,
                                             mon["typing"] - 0.1, window=0.5),
            "quiet_agent": correlation_over(agent_wav, refs["caller"],
                                            at["started"] + PROMPT_SECONDS + 0.3,
                                            at["typing"] - 0.1, window=0.5)}


def check_talk_through(result: dict[str, Any], product: Product) -> dict[str, float]:
    live: LiveCall = result["live"]
    for series in ("before", "during_agent", "during_caller", "delay_before", "delay_during",
                   "quiet_agent"):
        report(series, {f"{at:.1f}": f"{corr:.3f}@{lag * 1000:.1f}ms"
                        for at, corr, lag in result[series]})
    assert result["finished"]["result"] == "captured", live.sse.capture_events(
        str(result["stored"]["capture_id"]))
    assert result["stored"]["fields"]["card_number"]["last4"] == result["card"][-4:]
    assert result["stored"]["fields"]["card_number"]["brand"] == "visa"
    # while the capture ran: two media channels in A, two relay sockets in callsec
    channels, sockets = result["during"]
    assert len(channels) == 2 and len(sockets) == 2, result["during"]
    assert result["clean"] == ([], [], []), result["clean"]
    # the agent received no DTMF event and no key tone
    assert live.agent.dtmf == []
    assert result["agent_hits"] == [], result["agent_hits"]
    # the caller's voice reached the agent throughout, the agent's voice the caller
    before = window_stats(result["before"])
    during = window_stats(result["during_agent"], TYPING_CORRELATION)
    back = window_stats(result["during_caller"])
    assert before[0] > QUIET_CORRELATION, result["before"]
    assert during[0] > TYPING_CORRELATION, result["during_agent"]
    assert back[0] > MIN_CORRELATION, result["during_caller"]
    # the delay: lags in the wall-clock faithful monitor, talking through vs. plain bridge
    bridge = window_stats(result["delay_before"], MIN_MONITOR_CORRELATION)
    through = window_stats(result["delay_during"], MIN_MONITOR_CORRELATION)
    quiet = window_stats(result["quiet_agent"])
    assert quiet[0] > QUIET_CORRELATION, result["quiet_agent"]  # no key, no prompt: intact
    # lags come in 20 ms monitor frames: compare whole milliseconds (0.1 - 0.04 is 0.06000001)
    added = round(through[1] - bridge[1], 3)
    assert 0.0 <= added <= MAX_ADDED_DELAY, (added, result["delay_before"],
                                             result["delay_during"])
    # signed evidence with the record; the desk was told
    signed = result["stored"]["media_evidence"]
    evidence = signed["evidence"]
    assert evidence["leaked_tone_frames"] == 0 and evidence["frames_relayed"] > 0, evidence
    assert verified(product, signed)
    assert result["evidence_event"]["leaked"] == 0
    assert result["leaks"] == []
    return {"corr_before": before[0], "corr_quiet": quiet[0], "corr_agent": during[0],
            "corr_caller": back[0],
            "lag_bridge_ms": bridge[1] * 1000, "lag_through_ms": through[1] * 1000,
            "added_delay_ms": added * 1000, "frames_flattened": evidence["frames_flattened"],
            "digits_detected": evidence["digits_detected"]}


def report(name: str, numbers: dict[str, float] | dict[str, str]) -> None:
    path = Path(__file__).resolve().parents[2] / "var" / "test" / "talkthrough-results.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {name} " + " ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
            for k, v in numbers.items()) + "\n")


# --- RFC 4733 callers -----------------------------------------------------------------------------

@pytest.fixture(scope="class")
async def rfc_product(sandbox: Sandbox) -> AsyncIterator[Product]:
    assert dtmf_mode(sandbox.a) == "rfc4733"
    async with running_product("capture-talkthrough") as running:
        yield running


class TestRfc4733:
    @pytest.fixture
    def product(self, rfc_product: Product) -> Product:
        return rfc_product

    async def test_caller_types_while_both_keep_talking_and_no_tone_reaches_the_agent(
            self, product: Product, carrier: Carrier, agents: AgentPhones,
            ari_a: aiohttp.ClientSession, register_secret: Callable[[str], None]) -> None:
        result = await talk_through_card(product, carrier, agents, ari_a, register_secret, 120)
        numbers = check_talk_through(result, product)
        report("rfc4733", numbers)

    async def test_caller_hanging_up_mid_capture_leaves_nothing_behind(
            self, product: Product, carrier: Carrier, agents: AgentPhones,
            ari_a: aiohttp.ClientSession) -> None:
        async with connected_call(product.desk, carrier, agents, ari_a,
                                  product.sse_dir) as live:
            capture_id = await start_capture(live, product.desk)
            assert len(udp_sockets(pid(product))) == 2
            await live.carrier.send_dtmf("4111")
            await live.carrier.hangup()
            finished = await live.sse.wait_stage(capture_id, "finished")
            assert (finished["result"], finished["reason"]) == ("hangup", "caller_left")
        assert await wait_clean(ari_a, pid(product)) == ([], [], [])
        stored = await product.desk.wait_capture(capture_id, "hangup")
        assert stored["media_evidence"]["evidence"]["leaked_tone_frames"] == 0

    async def test_agent_hanging_up_mid_capture_leaves_nothing_behind(
            self, product: Product, carrier: Carrier, agents: AgentPhones,
            ari_a: aiohttp.ClientSession) -> None:
        async with connected_call(product.desk, carrier, agents, ari_a,
                                  product.sse_dir) as live:
            capture_id = await start_capture(live, product.desk)
            await agents.hangup(AGENT)
            finished = await live.sse.wait_stage(capture_id, "finished")
            assert finished["reason"] == "agent_left"
            assert await wait_clean(ari_a, pid(product)) == ([], [], [])
            assert await live.carrier.state() == "Up"  # the caller is not cut off
        await product.desk.wait_capture(capture_id, "cancelled")

    async def test_cancel_returns_the_caller_to_the_agent_and_leaves_nothing_behind(
            self, product: Product, carrier: Carrier, agents: AgentPhones,
            ari_a: aiohttp.ClientSession) -> None:
        desk = product.desk
        async with connected_call(desk, carrier, agents, ari_a, product.sse_dir) as live:
            capture_id = await start_capture(live, desk)
            async with ari_a.get(f"/ari/bridges/callsec-call-{live.call_id}") as resp:
                agent_bridge = (await resp.json())["channels"]
            assert live.call_id not in agent_bridge and len(agent_bridge) == 2  # agent + E2
            status, _ = await desk.call(
                "DELETE", f"/api/v1/calls/{live.call_id}/captures/{capture_id}")
            assert status == 200
            await live.sse.wait_stage(capture_id, "finished")
            assert await wait_clean(ari_a, pid(product)) == ([], [], [])
            async with ari_a.get(f"/ari/bridges/callsec-call-{live.call_id}") as resp:
                agent_bridge = (await resp.json())["channels"]
            assert live.call_id in agent_bridge and len(agent_bridge) == 2  # caller + agent
        assert (await desk.wait_capture(capture_id, "cancelled"))["vault_refs"] == {}

    async def test_callsec_killed_mid_capture_is_cleaned_up_by_the_next_one(
            self, product: Product, carrier: Carrier, agents: AgentPhones,
            ari_a: aiohttp.ClientSession) -> None:
        desk, proc = product.desk, product.proc
        caller = fresh_caller()
        before = agents.seen(AGENT)  # callsec dials the agent as it answers the caller
        call = await carrier.call("2100", caller_id=caller)
        await call.wait_up(timeout=15)
        await agents.wait_ringing(AGENT, timeout=20, known=before)
        call_id = str((await a_channel(ari_a, caller, "2100"))["id"])
        try:
            await desk.wait_state(call_id, "connected")
            sse = SseRecorder(desk, call_id, product.sse_dir / f"{call_id}.sse")
            reader = asyncio.create_task(sse.run())
            try:
                capture_id = await request_talk_through(desk, call_id, CARD)
                await sse.wait_stage(capture_id, "field_started", field="card_number")
                await call.send_dtmf("4111")
            finally:
                reader.cancel()
            assert len(await unicast_channels(ari_a)) == 2
            assert await capture_bridges(ari_a) == [f"callsec-capture-{call_id}"]
            proc.kill()  # SIGKILL: no clean-up of any kind
            assert len(await unicast_channels(ari_a)) == 2  # Asterisk keeps them meanwhile
            await proc.start()
            assert await wait_clean(ari_a, pid(product), timeout=15) == ([], [], [])
            async with asyncio.timeout(10):
                while True:
                    async with ari_a.get(f"/ari/bridges/callsec-call-{call_id}") as resp:
                        members = (await resp.json())["channels"]
                    if call_id in members:
                        break
                    await asyncio.sleep(0.2)
            assert sorted(members) == sorted([call_id, f"{call_id}-agent"])  # back with the agent
            assert (await desk.wait_capture(capture_id, "cancelled"))["vault_refs"] == {}
        finally:
            for prefix in ("callsec-capture-", "callsec-call-"):
                async with ari_a.delete(f"/ari/bridges/{prefix}{call_id}"):
                    pass


# --- in-band callers -------------------------------------------------------------------------------

@pytest.fixture(scope="class")
def inband(sandbox: Sandbox) -> Iterator[Sandbox]:
    from tests.integration.test_capture_inband_sandbox import _sandbox_up

    _sandbox_up("inband")
    assert dtmf_mode(sandbox.a) == "inband" and dtmf_mode(sandbox.b) == "inband"
    try:
        yield sandbox
    finally:
        _sandbox_up("rfc4733")


@pytest.fixture(scope="class")
async def inband_product(inband: Sandbox) -> AsyncIterator[Product]:
    async with running_product("capture-talkthrough-inband") as running:
        yield running


class TestInband:
    @pytest.fixture
    def product(self, inband_product: Product) -> Product:
        return inband_product

    async def test_inband_tones_are_flattened_and_the_card_is_still_captured(
            self, product: Product, carrier: Carrier, agents: AgentPhones,
            ari_a: aiohttp.ClientSession, register_secret: Callable[[str], None]) -> None:
        result = await talk_through_card(product, carrier, agents, ari_a, register_secret, 160)
        numbers = check_talk_through(result, product)
        report("inband", numbers)
        # A's in-band detector (dtmf_mode = inband) squelches each tone once it has recognised
        # it; the leading edge it lets through reaches the relay, which flattens it
        assert numbers["frames_flattened"] > 0
