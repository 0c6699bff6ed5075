"""A small RTP layer (RFC 3550): header parse/build and the order of arriving packets.

Only what the talk-through relay needs: fixed header (version 2, padding, extension, CSRC
count, marker, payload type, sequence number, timestamp, SSRC), CSRC list, header extension
and padding. Malformed packets raise :class:`MalformedRtp`, which the relay counts and drops.

:class:`ReorderWindow` places each arriving packet relative to the one frame the DTMF filter
holds back (its look-ahead) and the last frame already released: the next frame, a frame that
overtook nothing yet (it may still be sent before the held one), a duplicate, or a late frame
whose successor was already sent (dropped). A large jump back or a new SSRC starts a new stream.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

from callsec_ari.core.errors import ErrorId, InvalidInput

PCMU = 0
HEADER_LEN = 12
_FIXED = struct.Struct("!BBHII")
_EXT = struct.Struct("!HH")
#: RFC 3550 A.1: a packet this far behind the expected sequence starts a new stream.
MAX_MISORDER = 100


class MalformedRtp(InvalidInput):
    """A datagram that is not a well-formed RTP version 2 packet. The message names the defect,
    never the payload."""

    error_id = ErrorId.RTP_MALFORMED


class RtpPacket(NamedTuple):
    """One RTP packet. ``payload`` excludes padding; ``payload_start``/``payload_end`` locate
    it in the datagram (so a filtered payload of the same length can be spliced back in and
    every other byte, header and padding included, stays as received)."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None  # (profile-defined 16 bits, header data)
    padding: int = 0  # number of padding octets, the last one included
    payload_start: int = HEADER_LEN
    payload_end: int = HEADER_LEN


def parse_packet(data: bytes) -> RtpPacket:
    """Parse one datagram; :class:`MalformedRtp` when it is not valid RTP version 2."""
    if len(data) < HEADER_LEN:
        raise MalformedRtp("rtp packet shorter than the fixed header")
    first, second, sequence, timestamp, ssrc = _FIXED.unpack_from(data)
    if first >> 6 != 2:
        raise MalformedRtp("rtp version is not 2")
    offset = HEADER_LEN
    csrcs: tuple[int, ...] = ()
    if first & 0x0F:
        count = first & 0x0F
        if len(data) < offset + 4 * count:
            raise MalformedRtp("rtp csrc list runs past the packet")
        csrcs = struct.unpack_from(f"!{count}I", data, offset)
        offset += 4 * count
    extension = None
    if first & 0x10:
        if len(data) < offset + 4:
            raise MalformedRtp("rtp extension header runs past the packet")
        profile, words = _EXT.unpack_from(data, offset)
        end = offset + 4 + 4 * words
        if len(data) < end:
            raise MalformedRtp("rtp extension runs past the packet")
        extension = (profile, bytes(data[offset + 4:end]))
        offset = end
    end = len(data)
    padding = 0
    if first & 0x20:
        padding = data[-1]
        if padding == 0 or padding > end - offset:
            raise MalformedRtp("rtp padding count is zero or longer than the payload")
        end -= padding
    return RtpPacket(second & 0x7F, sequence, timestamp, ssrc, bytes(data[offset:end]),
                     bool(second & 0x80), csrcs, extension, padding, offset, end)


def build_packet(
    payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes, *,
    marker: bool = False, csrcs: tuple[int, ...] = (), extension: tuple[int, bytes] | None = None,
    padding: int = 0,
) -> bytes:
    """Serialise an RTP version 2 packet (padding octets are zeros, the last one the count)."""
    if not 0 <= payload_type <= 127 or len(csrcs) > 15 or not 0 <= padding <= 255:
        raise ValueError("rtp field out of range")
    first = 0x80 | (0x20 if padding else 0) | (0x10 if extension else 0) | len(csrcs)
    second = (0x80 if marker else 0) | payload_type
    parts = [_FIXED.pack(first, second, sequence & 0xFFFF, timestamp & 0xFFFFFFFF,
                         ssrc & 0xFFFFFFFF)]
    if csrcs:
        parts.append(struct.pack(f"!{len(csrcs)}I", *csrcs))
    if extension:
        profile, data = extension
        if len(data) % 4:
            raise ValueError("rtp extension data must be a multiple of 4 octets")
        parts.append(_EXT.pack(profile, len(data) // 4) + data)
    parts.append(payload)
    if padding:
        parts.append(bytes(padding - 1) + bytes([padding]))
    return b"".join(parts)


def build(packet: RtpPacket) -> bytes:
    """The inverse of :func:`parse_packet`."""
    return build_packet(packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc,
                        packet.payload, marker=packet.marker, csrcs=packet.csrcs,
                        extension=packet.extension, padding=packet.padding)


def seq_delta(seq: int, ref: int) -> int:
    """Signed distance from ``ref`` to ``seq`` in 16-bit sequence space (-32768..32767)."""
    return ((seq - ref + 0x8000) & 0xFFFF) - 0x8000


class Order(enum.Enum):
    NEXT = "next"                # after the held frame (or after the last released one)
    BEFORE_HELD = "before_held"  # between the last released frame and the held one
    DUPLICATE = "duplicate"      # the held frame or the last released frame again
    LATE = "late"                # its successor was already released: drop
    NEW_STREAM = "new_stream"    # new SSRC or a jump back beyond MAX_MISORDER


class ReorderWindow:
    """Sequence bookkeeping for a one-frame look-ahead: at most one frame is held.

    ``place`` classifies an arriving packet and updates the window as if the caller acts on
    the verdict (``NEXT``: the held frame is released, the new one held; ``BEFORE_HELD``: the
    new one is released at once; ``NEW_STREAM``: the held frame is released, the new one held);
    ``released_held`` records that the held frame was released by a deadline.
    """

    __slots__ = ("_held", "_last", "_ssrc")

    def __init__(self) -> None:
        self._ssrc: int | None = None
        self._held: int | None = None
        self._last: int | None = None

    @property
    def holding(self) -> bool:
        return self._held is not None

    def place(self, sequence: int, ssrc: int) -> Order:
        if ssrc != self._ssrc:
            return self._restart(sequence, ssrc)
        held, last = self._held, self._last
        if held is not None:
            delta = seq_delta(sequence, held)
            if delta > 0:
                self._last, self._held = held, sequence
                return Order.NEXT
            if delta == 0:
                return Order.DUPLICATE
            if delta < -MAX_MISORDER:
                return self._restart(sequence, ssrc)
            behind = seq_delta(sequence, last) if last is not None else 1
            if behind > 0:
                self._last = sequence
                return Order.BEFORE_HELD
            return Order.DUPLICATE if behind == 0 else Order.LATE
        delta = seq_delta(sequence, last) if last is not None else 1
        if delta > 0:
            self._held = sequence
            return Order.NEXT
        if delta < -MAX_MISORDER:
            return self._restart(sequence, ssrc)
        return Order.DUPLICATE if delta == 0 else Order.LATE

    def released_held(self) -> None:
        if self._held is not None:
            self._last, self._held = self._held, None

    def _restart(self, sequence: int, ssrc: int) -> Order:
        self._ssrc, self._held, self._last = ssrc, sequence, None
        return Order.NEW_STREAM
