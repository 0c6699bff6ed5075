"""RTP parse/build (RFC 3550) and the one-frame reorder window."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callsec_ari.core.errors import CallsecError
from callsec_ari.media.rtp import (
    MalformedRtp,
    Order,
    ReorderWindow,
    RtpPacket,
    build,
    build_packet,
    parse_packet,
    seq_delta,
)

u32 = st.integers(0, 2**32 - 1)


@st.composite
def packets(draw: st.DrawFn) -> RtpPacket:
    csrcs = tuple(draw(st.lists(u32, max_size=15)))
    extension = draw(st.none() | st.tuples(
        st.integers(0, 0xFFFF), st.binary(max_size=12).map(lambda b: b + bytes(-len(b) % 4))))
    payload = draw(st.binary(max_size=200))
    padding = draw(st.integers(0, 255))
    data = build_packet(draw(st.integers(0, 127)), draw(st.integers(0, 0xFFFF)), draw(u32),
                        draw(u32), payload, marker=draw(st.booleans()), csrcs=csrcs,
                        extension=extension, padding=padding)
    return parse_packet(data)


@given(packets())
def test_build_then_parse_gives_the_same_packet(packet: RtpPacket) -> None:
    assert parse_packet(build(packet)) == packet


def test_fields_of_a_known_packet() -> None:
    data = bytes.fromhex("80e0 0102 00000a00 deadbeef") + b"\x01\x02\x03"
    packet = parse_packet(data)
    assert (packet.payload_type, packet.marker, packet.sequence, packet.timestamp,
            packet.ssrc, packet.payload) == (96, True, 0x0102, 0xA00, 0xDEADBEEF, b"\x01\x02\x03")
    assert data[packet.payload_start:packet.payload_end] == packet.payload


def test_padding_is_excluded_from_the_payload_and_located() -> None:
    data = build_packet(0, 1, 2, 3, b"abcd", padding=4)
    packet = parse_packet(data)
    assert packet.payload == b"abcd" and packet.padding == 4
    assert data[packet.payload_end:] == b"\x00\x00\x00\x04"


@pytest.mark.parametrize(("data", "defect"), [
    (b"\x80\x00\x00", "shorter"),
    (bytes.fromhex("40000001000000000000000a"), "version"),
    (bytes.fromhex("83000001000000000000000a") + bytes(8), "csrc"),
    (bytes.fromhex("90000001000000000000000a") + b"\x00\x00", "extension header"),
    (bytes.fromhex("90000001000000000000000a") + b"\x00\x00\x00\x02" + bytes(4), "extension"),
    (bytes.fromhex("a0000001000000000000000a") + b"ab\x00", "padding"),
    (bytes.fromhex("a0000001000000000000000a") + b"ab\x09", "padding"),
])
def test_malformed_packets_raise_a_callsec_error_naming_the_defect(data: bytes,
                                                                   defect: str) -> None:
    with pytest.raises(MalformedRtp, match=defect) as caught:
        parse_packet(data)
    assert isinstance(caught.value, CallsecError)
    assert caught.value.error_id == "rtp_malformed"


@given(st.binary(max_size=64))
def test_arbitrary_bytes_parse_or_raise_malformed(data: bytes) -> None:
    try:
        packet = parse_packet(data)
    except MalformedRtp:
        return
    assert packet.payload_start <= packet.payload_end <= len(data)


def test_sequence_delta_wraps_at_16_bits() -> None:
    assert seq_delta(0, 0xFFFF) == 1
    assert seq_delta(0xFFFF, 0) == -1
    assert seq_delta(100, 40) == 60


def _window(*seqs: int) -> tuple[ReorderWindow, list[Order]]:
    window = ReorderWindow()
    return window, [window.place(s, 7) for s in seqs]


def test_in_order_stream_is_next_after_the_first() -> None:
    _, orders = _window(10, 11, 12, 14)
    assert orders == [Order.NEW_STREAM, Order.NEXT, Order.NEXT, Order.NEXT]


def test_a_frame_overtaken_by_one_is_still_placed_before_the_held_one() -> None:
    _, orders = _window(10, 12, 11, 13)
    assert orders == [Order.NEW_STREAM, Order.NEXT, Order.BEFORE_HELD, Order.NEXT]


def test_a_frame_whose_successor_was_released_is_late() -> None:
    _, orders = _window(10, 12, 13, 11)
    assert orders[-1] is Order.LATE


def test_duplicates_of_the_held_and_the_last_released_frame() -> None:
    _, orders = _window(10, 11, 11, 10)
    assert orders[2:] == [Order.DUPLICATE, Order.DUPLICATE]


def test_after_a_deadline_release_the_next_frame_is_next_and_older_ones_late() -> None:
    window, _ = _window(10, 11)
    window.released_held()
    assert [window.place(s, 7) for s in (11, 10, 12)] == [Order.DUPLICATE, Order.LATE,
                                                          Order.NEXT]


def test_new_ssrc_or_big_jump_back_starts_a_new_stream() -> None:
    window, _ = _window(500, 501)
    assert window.place(502, 8) is Order.NEW_STREAM
    assert window.place(10, 8) is Order.NEW_STREAM
    assert window.place(11, 8) is Order.NEXT


def test_sequence_wrap_is_in_order() -> None:
    _, orders = _window(0xFFFE, 0xFFFF, 0, 1)
    assert orders[1:] == [Order.NEXT] * 3


@given(st.permutations(list(range(30))), st.integers(0, 0xFFFF))
def test_each_sequence_number_is_released_at_most_once_and_in_order(
        arrival: list[int], base: int) -> None:
    """Simulate what the pipeline does with the verdicts: released sequence numbers must come
    out strictly increasing, whatever the arrival order."""
    window = ReorderWindow()
    released: list[int] = []
    held: int | None = None
    for index in arrival:
        seq = (base + index) & 0xFFFF
        order = window.place(seq, 1)
        if order in (Order.NEXT, Order.NEW_STREAM):
            if held is not None:
                released.append(held)
            held = index
        elif order is Order.BEFORE_HELD:
            released.append(index)
    if held is not None:
        released.append(held)
    assert released == sorted(set(released))
