"""One caller-to-agent media path, without I/O: RTP in, filtered RTP out.

:class:`CallerPath` parses each datagram from E1, places it in sequence (:class:`ReorderWindow`),
passes its payload through the one-frame look-ahead :class:`ToneFilter` and hands back the
packets to send to E2: the original datagram itself when the frame was not flattened, else the
original header (sequence, timestamp, SSRC, marker, CSRCs, extension) and padding around the
replacement payload. Only PCMU (payload type 0) is relayed: any other payload type (RFC 4733
telephone-events above all) is dropped, so no digit can pass as an event either.

The relay calls :meth:`CallerPath.receive` for every datagram and :meth:`CallerPath.flush`
when :attr:`CallerPath.flush_due` (loop time) has passed; all times are the caller's clock.
"""

from __future__ import annotations

from typing import NamedTuple

from callsec_ari.media.dtmf import Released, Replacement, ToneFilter
from callsec_ari.media.rtp import PCMU, MalformedRtp, Order, ReorderWindow, parse_packet


class _Tag(NamedTuple):
    datagram: bytes
    start: int
    end: int
    arrived: float


class Outgoing(NamedTuple):
    """A packet for E2. ``digit``: the key whose press ended with this frame (a secret)."""

    packet: bytes
    flattened: bool
    digit: str | None


class Drops(NamedTuple):
    malformed: int
    unsupported: int  # not PCMU, or an empty payload
    duplicate: int
    late: int

    @property
    def total(self) -> int:
        return self.malformed + self.unsupported + self.duplicate + self.late


class CallerPath:
    """E1 -> filter -> E2 for one capture."""

    def __init__(self, *, replacement: Replacement = "silence",
                 flush_after: float = 0.025) -> None:
        self._filter: ToneFilter[_Tag] = ToneFilter(replacement=replacement)
        self._order = ReorderWindow()
        self._flush_after = flush_after
        self._due: float | None = None
        self._last_seq = -1  # sequence number of the newest frame held
        self._malformed = self._unsupported = self._duplicate = self._late = 0
        self.max_hold = 0.0  # seconds
        #: frames by hold time: bucket i counts holds in [i, i+1) ms, the last one 99 ms and more
        self.hold_histogram = [0] * 100
        self.flushed_frames = 0

    @property
    def filter(self) -> ToneFilter[_Tag]:
        return self._filter

    @property
    def drops(self) -> Drops:
        return Drops(self._malformed, self._unsupported, self._duplicate, self._late)

    @property
    def flush_due(self) -> float | None:
        """When the held frame must go out even without a successor (None: nothing held)."""
        return self._due

    def receive(self, datagram: bytes, now: float) -> list[Outgoing]:
        """A datagram from E1 -> the packets to send to E2 now (0, 1 or 2)."""
        try:
            packet = parse_packet(datagram)
        except MalformedRtp:
            self._malformed += 1
            return []
        if packet.payload_type != PCMU or not packet.payload:
            self._unsupported += 1
            return []
        order = self._order.place(packet.sequence, packet.ssrc)
        tag = _Tag(datagram, packet.payload_start, packet.payload_end, now)
        if order is Order.NEXT:
            gap = packet.sequence != (self._last_seq + 1) & 0xFFFF
            self._last_seq = packet.sequence
            released = self._filter.push(packet.payload, tag, gap=gap)
            self._due = now + self._flush_after
            return [] if released is None else [self._out(released, now)]
        if order is Order.BEFORE_HELD:
            return [self._out(self._filter.push_before_held(packet.payload, tag), now)]
        if order is Order.NEW_STREAM:  # the frame held from the old stream goes first
            flushed = self._filter.flush()
            self._last_seq = packet.sequence
            self._filter.push(packet.payload, tag, gap=True)
            self._due = now + self._flush_after
            return [] if flushed is None else [self._out(flushed, now)]
        if order is Order.DUPLICATE:
            self._duplicate += 1
        else:
            self._late += 1
        return []

    def flush(self, now: float) -> Outgoing | None:
        """Release the held frame (its deadline passed, or the path is closing)."""
        self._due = None
        released = self._filter.flush()
        if released is None:
            return None
        self.flushed_frames += 1
        self._order.released_held()
        return self._out(released, now)

    def _out(self, released: Released[_Tag], now: float) -> Outgoing:
        tag = released.tag
        hold = now - tag.arrived
        if hold > self.max_hold:
            self.max_hold = hold
        self.hold_histogram[min(int(hold * 1000.0), 99)] += 1
        if not released.flattened:
            return Outgoing(tag.datagram, False, released.digit)
        data = tag.datagram
        return Outgoing(data[:tag.start] + released.payload + data[tag.end:], True,
                        released.digit)
