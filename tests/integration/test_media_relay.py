"""The talk-through relay on real UDP sockets (127.0.0.1) between two fake Asterisk media
channels: E1 streams the caller's audio (speech, then key tones) at 50 packets/s, E2 streams
the agent's; the tests listen to what each side receives, under loss, reordering, duplicates
and late packets, and check that no socket outlives the relay."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from callsec_ari.media import g711
from callsec_ari.media.dtmf import FRAME
from callsec_ari.media.relay import FilterOptions, MediaRelay
from callsec_ari.media.rtp import build_packet, parse_packet
from tests.harness.goertzel import detect_dtmf
from tests.unit.media.signals import dtmf_sequence, speech_like, to_frames

KEYS = "41111111"
PACE = 0.020


@dataclass
class FakeChannel(asyncio.DatagramProtocol):
    """One UnicastRTP channel: a socket that records what it receives (and when)."""

    received: list[tuple[float, bytes]] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append((asyncio.get_running_loop().time(), data))

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def payloads(self) -> list[bytes]:
        return [parse_packet(data).payload for _, data in self.received]


async def channel(host: str = "127.0.0.1") -> FakeChannel:
    _, proto = await asyncio.get_running_loop().create_datagram_endpoint(
        FakeChannel, local_addr=(host, 0))
    return proto


def rtp_stream(frames: Sequence[bytes], ssrc: int, first_seq: int = 40000) -> list[bytes]:
    return [build_packet(0, (first_seq + i) & 0xFFFF, i * FRAME, ssrc, f, marker=i == 0)
            for i, f in enumerate(frames)]


async def stream(source: FakeChannel, port: int, schedule: Sequence[tuple[int, bytes]]) -> None:
    """Send each packet at its slot (slot * 20 ms from now), as Asterisk's RTP timer does."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert source.transport is not None
    for slot, packet in sorted(schedule, key=lambda item: item[0]):
        delay = start + slot * PACE - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        source.transport.sendto(packet, ("127.0.0.1", port))


def paced(packets: Sequence[bytes]) -> list[tuple[int, bytes]]:
    return list(enumerate(packets))


def udp_ports_open() -> set[int]:
    """Local ports of the UDP sockets of this machine (what ``ss -u`` lists)."""
    ports: set[int] = set()
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        path = Path(name)
        if path.exists():
            for line in path.read_text().splitlines()[1:]:
                ports.add(int(line.split()[1].rsplit(":", 1)[1], 16))
    return ports


def audio(payloads: Sequence[bytes]) -> np.ndarray:
    return g711.decode(b"".join(payloads)).astype(np.float64) / 32768.0


@pytest.fixture
async def talk() -> AsyncIterator[tuple[MediaRelay, FakeChannel, FakeChannel, list[str]]]:
    digits: list[str] = []
    relay = MediaRelay(options=FilterOptions(), on_digit=lambda key, _t: digits.append(key),
                       call_id="media-test")
    await relay.open()
    e1, e2 = await channel(), await channel()
    relay.set_peers(caller=e1.address, agent=e2.address)
    yield relay, e1, e2, digits
    relay.close()
    for fake in (e1, e2):
        assert fake.transport is not None
        fake.transport.close()


def caller_frames(seed: int = 1) -> list[bytes]:
    tones = dtmf_sequence(KEYS, [80] * 8, [70] * 8, -12.0, lead_ms=7)
    return to_frames(np.concatenate([speech_like(0.6, seed), tones, speech_like(0.4, seed + 1)]))


async def test_agent_never_receives_dtmf_while_both_parties_keep_talking(talk) -> None:
    relay, e1, e2, digits = talk
    frames = caller_frames()
    agent_frames = to_frames(speech_like(len(frames) * 0.02, 9))
    caller_packets, agent_packets = rtp_stream(frames, 11), rtp_stream(agent_frames, 22)
    await asyncio.gather(stream(e1, relay.caller_port, paced(caller_packets)),
                         stream(e2, relay.agent_port, paced(agent_packets)))
    await asyncio.sleep(0.1)

    assert [k for _, k in detect_dtmf(audio(frames))] == list(KEYS)  # control: tones were sent
    heard = e2.payloads()
    assert len(heard) == len(frames)
    assert detect_dtmf(audio(heard)) == []
    speech = range(29)  # the caller's voice, byte for byte (frame 29 precedes a tone)
    assert [heard[i] for i in speech] == [frames[i] for i in speech]
    assert [d for _, d in e2.received] == [
        p if parse_packet(p).payload == h else p[:12] + h
        for p, h in zip(caller_packets, heard, strict=True)]  # headers kept
    assert [d for _, d in e1.received] == agent_packets  # the agent's voice, unchanged
    assert digits == list(KEYS)
    evidence = relay.evidence
    assert (evidence.frames_relayed, evidence.agent_frames_relayed) == (len(frames),
                                                                         len(agent_frames))
    assert evidence.digits_detected == len(KEYS) and evidence.leaked_tone_frames == 0
    assert evidence.frames_flattened >= 8 * 4 and evidence.packets_dropped == 0
    assert 15.0 < evidence.max_hold_ms <= 40.0


async def test_loss_reordering_duplicates_and_late_packets_never_let_a_tone_through(talk) -> None:
    relay, e1, e2, _digits = talk
    rng = random.Random(7)
    packets = rtp_stream(caller_frames(3), 33, first_seq=65500)  # wraps past 65535
    schedule: list[tuple[int, bytes]] = []
    dropped = duplicated = late = 0
    for slot, packet in enumerate(packets):
        roll = rng.random()
        if roll < 0.05:
            dropped += 1
        elif roll < 0.10:
            schedule += [(slot, packet), (slot, packet)]
            duplicated += 1
        elif roll < 0.13 and slot > 5:
            schedule.append((slot + 3, packet))  # three frames late: its successor left
            late += 1
        elif roll < 0.25:
            schedule.append((slot + 1, packet))  # overtaken by one: still placed in order
        else:
            schedule.append((slot, packet))
    await stream(e1, relay.caller_port, schedule)
    await asyncio.sleep(0.1)

    heard = e2.payloads()
    sequences = [parse_packet(d).sequence for _, d in e2.received]
    assert all(0 < (b - a) & 0xFFFF < 0x8000 for a, b in itertools.pairwise(sequences))
    assert detect_dtmf(audio(heard)) == []
    assert relay.evidence.leaked_tone_frames == 0
    drops = relay.drop_counts
    assert drops["duplicate"] >= duplicated and drops["late"] >= 1
    assert len(heard) + drops["duplicate"] + drops["late"] == len(schedule)
    assert relay.evidence.max_hold_ms <= 40.0


async def test_peers_are_learned_from_the_first_packet_and_strangers_are_dropped() -> None:
    relay = MediaRelay(options=FilterOptions())
    await relay.open()
    e1, e2, stranger, other_host = (await channel(), await channel(), await channel(),
                                    await channel("127.0.0.2"))
    try:
        frames = to_frames(speech_like(0.2, 4))
        packets = rtp_stream(frames, 44)
        assert other_host.transport and stranger.transport and e1.transport and e2.transport
        other_host.transport.sendto(packets[0], ("127.0.0.1", relay.caller_port))
        await asyncio.sleep(0.02)
        for packet in packets[:3]:  # the agent side is unknown yet: nowhere to send
            e1.transport.sendto(packet, ("127.0.0.1", relay.caller_port))
        await asyncio.sleep(0.05)
        e2.transport.sendto(packets[0], ("127.0.0.1", relay.agent_port))  # E2 learned
        await asyncio.sleep(0.02)
        stranger.transport.sendto(packets[5], ("127.0.0.1", relay.caller_port))
        await stream(e1, relay.caller_port, paced(packets[3:]))
        await asyncio.sleep(0.1)
        # frames 0-2 left before E2 was known (frame 2 by its deadline)
        assert e2.payloads() == frames[3:]
        assert e1.payloads() == [frames[0]]
        assert stranger.received == [] and other_host.received == []
        assert relay.drop_counts["foreign"] == 2 and relay.drop_counts["unsent"] == 3
        assert relay.evidence.packets_dropped == 5
    finally:
        relay.close()
        for fake in (e1, e2, stranger, other_host):
            assert fake.transport is not None
            fake.transport.close()


async def test_an_unspecified_peer_address_means_the_peer_host() -> None:
    async with MediaRelay(options=FilterOptions()) as relay:
        e1, e2 = await channel(), await channel()
        relay.set_peers(caller=("0.0.0.0", e1.address[1]), agent=("0.0.0.0", e2.address[1]))
        frames = to_frames(speech_like(0.1, 8))
        await asyncio.gather(stream(e1, relay.caller_port, paced(rtp_stream(frames, 1))),
                             stream(e2, relay.agent_port, paced(rtp_stream(frames, 2))))
        await asyncio.sleep(0.06)
        assert e2.payloads() == frames and e1.payloads() == frames
        for fake in (e1, e2):
            assert fake.transport is not None
            fake.transport.close()


async def test_a_held_frame_is_released_by_the_deadline_when_no_successor_comes(talk) -> None:
    relay, e1, e2, _ = talk
    assert e1.transport is not None
    loop = asyncio.get_running_loop()
    sent_at = loop.time()
    e1.transport.sendto(rtp_stream(to_frames(speech_like(0.02, 5)), 55)[0],
                        ("127.0.0.1", relay.caller_port))
    await asyncio.sleep(0.1)
    deadline_ms = FilterOptions().flush_after_ms  # the relay under test uses the default
    assert len(e2.received) == 1
    assert deadline_ms - 2 <= (e2.received[0][0] - sent_at) * 1000 <= deadline_ms + 25
    assert deadline_ms - 1 <= relay.evidence.max_hold_ms <= deadline_ms + 10


async def test_tone_mode_gives_the_agent_a_quiet_tone_instead_of_the_keys() -> None:
    async with MediaRelay(options=FilterOptions(replacement="tone")) as relay:
        e1, e2 = await channel(), await channel()
        relay.set_peers(caller=e1.address, agent=e2.address)
        frames = to_frames(dtmf_sequence("59", [120, 120], [60, 60], -8.0))
        await stream(e1, relay.caller_port, paced(rtp_stream(frames, 66)))
        await asyncio.sleep(0.1)
        heard = audio(e2.payloads())
        assert detect_dtmf(heard) == []
        assert g711.level_dbm0(heard * 32768.0) < -28.0
        assert relay.evidence.mode == "tone" and relay.evidence.digits_detected == 2
        for fake in (e1, e2):
            assert fake.transport is not None
            fake.transport.close()
    assert relay.closed


async def test_close_is_idempotent_and_leaves_no_socket_behind() -> None:
    relay = MediaRelay(options=FilterOptions())
    await relay.open()
    ports = {relay.caller_port, relay.agent_port}
    assert ports <= udp_ports_open()
    e1 = await channel()
    assert e1.transport is not None
    e1.transport.sendto(rtp_stream(to_frames(speech_like(0.02, 6)), 9)[0],
                        ("127.0.0.1", relay.caller_port))
    await asyncio.sleep(0.005)
    assert relay._timer is not None  # a frame is held, its deadline armed
    first = relay.close()
    e1.transport.close()
    assert relay._timer is None and first.frames_relayed == 0 and first.packets_dropped == 1
    assert relay.close() == first and relay.closed
    await asyncio.sleep(0)  # the loop releases the descriptors on its next iteration
    assert not ports & udp_ports_open()
    with pytest.raises(Exception, match="twice"):
        await relay.open()


async def test_a_failed_open_closes_the_socket_already_bound(monkeypatch) -> None:
    loop = asyncio.get_running_loop()
    real = loop.create_datagram_endpoint
    bound: list[int] = []

    async def second_fails(*args, **kwargs):  # type: ignore[no-untyped-def]
        if bound:
            raise OSError("no more ports")
        transport, proto = await real(*args, **kwargs)
        bound.append(transport.get_extra_info("sockname")[1])
        return transport, proto

    monkeypatch.setattr(loop, "create_datagram_endpoint", second_fails)
    relay = MediaRelay(options=FilterOptions())
    with pytest.raises(OSError, match="no more ports"):
        await relay.open()
    monkeypatch.undo()
    await asyncio.sleep(0)
    assert relay.closed and bound and bound[0] not in udp_ports_open()


async def test_a_failing_digit_callback_is_logged_without_the_key(caplog) -> None:
    def explode(key: str, _at: float) -> None:
        raise RuntimeError(f"secret key {key}")

    relay = MediaRelay(options=FilterOptions(), on_digit=explode, call_id="c-77")
    await relay.open()
    e1, e2 = await channel(), await channel()
    relay.set_peers(caller=e1.address, agent=e2.address)
    frames = to_frames(dtmf_sequence("#", [100], [100], -10.0))
    with caplog.at_level(logging.DEBUG, logger="callsec_ari.media"):
        await stream(e1, relay.caller_port, paced(rtp_stream(frames, 77)))
        await asyncio.sleep(0.1)
    relay.close()
    for fake in (e1, e2):
        assert fake.transport is not None
        fake.transport.close()
    assert len(e2.received) == len(frames)
    assert "RuntimeError" in caplog.text and "secret key" not in caplog.text
    assert all(getattr(r, "call_id", None) == "c-77" for r in caplog.records
               if r.name.startswith("callsec_ari.media"))


async def test_closing_the_relay_from_the_digit_callback_stops_it_cleanly() -> None:
    relay: MediaRelay | None = None

    def last_digit(_key: str, _at: float) -> None:
        assert relay is not None
        relay.close()

    relay = MediaRelay(options=FilterOptions(), on_digit=last_digit)
    await relay.open()
    ports = {relay.caller_port, relay.agent_port}
    e1, e2 = await channel(), await channel()
    relay.set_peers(caller=e1.address, agent=e2.address)
    frames = to_frames(dtmf_sequence("7", [100], [100], -10.0))
    await stream(e1, relay.caller_port, paced(rtp_stream(frames, 88)))
    await asyncio.sleep(0.06)
    assert relay.closed and relay.evidence.digits_detected == 1
    assert relay._timer is None  # no deadline timer outlives the relay
    assert not ports & udp_ports_open()
    assert len(e2.received) < len(frames)
    for fake in (e1, e2):
        assert fake.transport is not None
        fake.transport.close()
