"""The caller path without sockets: RTP in order or not, tones out never, headers kept."""

from __future__ import annotations

import itertools
import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from callsec_ari.media import g711
from callsec_ari.media.dtmf import FRAME, FrameAnalyser, LeakCounter
from callsec_ari.media.pipeline import CallerPath, Outgoing
from callsec_ari.media.rtp import build_packet, parse_packet
from tests.unit.media.signals import dtmf_sequence, speech_like, to_frames

SSRC = 0x1234ABCD


def rtp(frames: list[bytes], first_seq: int = 65530, ssrc: int = SSRC) -> list[bytes]:
    return [build_packet(0, (first_seq + i) & 0xFFFF, (1000 + FRAME * i) & 0xFFFFFFFF, ssrc,
                         frame, marker=i == 0) for i, frame in enumerate(frames)]


def drive(path: CallerPath, packets: list[bytes]) -> list[Outgoing]:
    out: list[Outgoing] = []
    for i, packet in enumerate(packets):
        out += path.receive(packet, now=i * 0.02)
    last = path.flush(len(packets) * 0.02)
    return out + ([last] if last is not None else [])


def leaks(payloads: list[bytes]) -> int:
    analyser, counter = FrameAnalyser(), LeakCounter()
    for payload in payloads:
        counter.feed(*analyser.analyse(payload))
    return counter.count


def test_untouched_packets_are_forwarded_as_the_same_bytes_and_flattened_keep_the_header(
) -> None:
    frames = to_frames(np.concatenate([speech_like(0.4, 1), dtmf_sequence(
        "12", [80, 80], [60, 60], -10.0)]))
    packets = rtp(frames)
    path = CallerPath()
    out = drive(path, packets)
    assert len(out) == len(packets)
    for sent, original in zip(out, packets, strict=True):
        if not sent.flattened:
            assert sent.packet is original
        else:
            a, b = parse_packet(sent.packet), parse_packet(original)
            assert a._replace(payload=b"") == b._replace(payload=b"")
            assert a.payload == bytes([g711.ULAW_SILENCE]) * FRAME
    assert [o.digit for o in out if o.digit] == ["1", "2"]
    assert path.filter.leaked_tone_frames == 0


def test_reordered_by_one_frame_is_sent_in_sequence_order() -> None:
    packets = rtp(to_frames(speech_like(0.2, 2)))
    arrival = packets[:]
    arrival[3], arrival[4] = arrival[4], arrival[3]
    arrival[7], arrival[8] = arrival[8], arrival[7]
    out = drive(CallerPath(), arrival)
    assert [parse_packet(o.packet).sequence for o in out] == [
        parse_packet(p).sequence for p in packets]


def test_duplicates_late_frames_and_garbage_are_dropped_and_counted() -> None:
    packets = rtp(to_frames(speech_like(0.2, 3)))
    arrival = [packets[0], packets[1], packets[1], packets[2], packets[3], packets[1],
               b"\x00garbage", build_packet(101, 7, 0, SSRC, b"\x01\x00\x00\xa0"),
               build_packet(0, 9, 0, SSRC, b""), *packets[4:]]
    path = CallerPath()
    out = drive(path, arrival)
    assert len(out) == len(packets)
    assert path.drops == (1, 2, 1, 1)  # malformed, unsupported, duplicate, late


def test_a_new_ssrc_releases_the_old_stream_first() -> None:
    frames = to_frames(speech_like(0.1, 4))
    path = CallerPath()
    out = drive(path, rtp(frames[:3]) [:3] + rtp(frames[3:], first_seq=10, ssrc=99))
    assert [parse_packet(o.packet).ssrc for o in out] == [SSRC] * 3 + [99] * (len(frames) - 3)


def test_the_deadline_is_set_while_a_frame_is_held_and_hold_time_is_measured() -> None:
    path = CallerPath(flush_after=0.03)
    packets = rtp(to_frames(speech_like(0.06, 5)))
    assert path.flush_due is None
    path.receive(packets[0], 10.0)
    assert path.flush_due == 10.03
    out = path.flush(10.031)
    assert out is not None and abs(path.max_hold - 0.031) < 1e-9
    assert path.flush_due is None
    # the stream continues after a deadline release
    assert path.receive(packets[1], 10.04) == []
    assert len(path.receive(packets[2], 10.06)) == 1


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), loss=st.floats(0.0, 0.2), dup=st.floats(0.0, 0.1),
       swap=st.floats(0.0, 0.3))
def test_no_tone_reaches_the_agent_side_under_loss_duplicates_and_reordering(
        seed: int, loss: float, dup: float, swap: float) -> None:
    rng = random.Random(seed)
    keys = "".join(rng.choice("0123456789#*") for _ in range(6))
    signal = dtmf_sequence(keys, [rng.randint(40, 160) for _ in keys],
                           [rng.randint(40, 160) for _ in keys], rng.uniform(-30, 0),
                           lead_ms=rng.uniform(0, 40))
    packets = rtp(to_frames(signal), first_seq=rng.randint(0, 0xFFFF))
    arrival = [p for p in packets if rng.random() >= loss]
    arrival = [q for p in arrival for q in ([p, p] if rng.random() < dup else [p])]
    for i in range(len(arrival) - 1):
        if rng.random() < swap:
            arrival[i], arrival[i + 1] = arrival[i + 1], arrival[i]
    path = CallerPath()
    out = drive(path, arrival)
    sequences = [parse_packet(o.packet).sequence for o in out]
    assert len(sequences) == len(set(sequences))
    assert all((b - a) & 0xFFFF < 0x8000 for a, b in itertools.pairwise(sequences))
    assert path.filter.leaked_tone_frames == 0
    assert leaks([parse_packet(o.packet).payload for o in out]) == 0
    assert len(out) + path.drops.total == len(arrival)
