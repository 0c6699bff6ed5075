"""The talk-through UDP relay between Asterisk's externalMedia channels E1 and E2.

E1 (in the caller's capture bridge) sends the caller's audio to :attr:`MediaRelay.caller_port`;
it goes through :class:`~callsec_ari.media.pipeline.CallerPath` (DTMF flattened with one frame
of look-ahead) and out of the agent-side socket to E2. E2 (in the agent's bridge) sends the
agent's audio to :attr:`MediaRelay.agent_port`; it goes out of the caller-side socket to E1
unchanged. Each socket sends to the address its peer sends from (symmetric RTP).

Callback protocols only (``loop.create_datagram_endpoint``): no task per relay. The only timer
is the look-ahead deadline (``loop.call_at``), cancelled on close. ``close()`` is idempotent,
flushes the held frame and closes both sockets (the event loop releases the file descriptors
on its next iteration). Keys detected in-band go to ``on_digit`` and nowhere else: never to a
log line or an exception.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

from callsec_ari.core.errors import Conflict, ErrorId
from callsec_ari.logs import Figure
from callsec_ari.media.evidence import Evidence
from callsec_ari.media.pacing import Backlog
from callsec_ari.media.pipeline import CallerPath, Outgoing
from callsec_ari.media.rtp import HEADER_LEN

logger = logging.getLogger(__name__)
Address = tuple[str, int]
_EARLY = 0.001  # a deadline this close counts as reached


@dataclass(frozen=True, kw_only=True)
class FilterOptions:
    replacement: Literal["silence", "tone"] = "silence"
    flush_after_ms: float = 25.0   # release a held frame if its successor is this late


class RelayClosed(Conflict):
    error_id = ErrorId.MEDIA_RELAY_CLOSED


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: MediaRelay, side: str) -> None:
        self._relay, self._side = relay, side

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable
        self._relay._socket_error(self._side, exc)


class _CallerSide(_Side):
    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._relay._from_caller(data, addr)


class _AgentSide(_Side):
    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._relay._from_agent(data, addr)


class BoundPorts:
    """The two UDP ports of an open relay, in-process or in the media worker."""

    _ports: tuple[int, int] = (0, 0)

    @property
    def caller_port(self) -> int:
        """E1 (the caller's capture bridge) sends here."""
        return self._bound()[0]

    @property
    def agent_port(self) -> int:
        """E2 (the agent's bridge) sends here."""
        return self._bound()[1]

    def _bound(self) -> tuple[int, int]:
        if not self._ports[0]:
            raise RelayClosed("media relay is not open")
        return self._ports


class MediaRelay(BoundPorts):
    """Two UDP sockets and the DTMF filter between them, for one talk-through capture."""

    def __init__(self, *, options: FilterOptions,
                 on_digit: Callable[[str, float], None] | None = None,
                 host: str = "127.0.0.1", peer_host: str = "127.0.0.1",
                 call_id: str = "-") -> None:
        self._options = options
        self._on_digit = on_digit
        self._host, self._peer_host = host, peer_host
        self._log = {"call_id": call_id}
        self._path = CallerPath(replacement=options.replacement,
                                flush_after=options.flush_after_ms / 1000.0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._caller: asyncio.DatagramTransport | None = None
        self._agent: asyncio.DatagramTransport | None = None
        self._ports = (0, 0)
        self._caller_peer: Address | None = None
        self._agent_peer: Address | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._foreign = self._agent_malformed = self._unsent = self._caller_unsent = 0
        self._agent_frames = 0
        self._final: Evidence | None = None
        #: what Asterisk still has to play of what each side was sent (see ``pacing``)
        self._to_agent, self._to_caller = Backlog(), Backlog()

    async def __aenter__(self) -> MediaRelay:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    async def open(self) -> None:
        """Bind the caller-side and agent-side sockets on ephemeral ports of ``host``."""
        if self._closed or self._caller is not None:
            raise RelayClosed("media relay cannot be opened twice")
        loop = asyncio.get_running_loop()
        self._loop = loop
        try:
            self._caller, _ = await loop.create_datagram_endpoint(
                lambda: _CallerSide(self, "caller"), local_addr=(self._host, 0))
            if not self._closed:
                self._agent, _ = await loop.create_datagram_endpoint(
                    lambda: _AgentSide(self, "agent"), local_addr=(self._host, 0))
            if self._closed:  # close() ran while a socket was being bound
                raise RelayClosed("media relay closed while opening")
        except BaseException:
            self.close()
            self._close_transports()
            raise
        assert self._caller is not None and self._agent is not None
        self._ports = (self._caller.get_extra_info("sockname")[1],
                       self._agent.get_extra_info("sockname")[1])
        logger.info("media relay open: caller port %s, agent port %s, %s", self._ports[0],
                    self._ports[1], self._options.replacement, extra=self._log)

    def set_peers(self, *, caller: Address | None = None, agent: Address | None = None) -> None:
        """E1's / E2's UNICASTRTP_LOCAL_ADDRESS and _PORT. Until set, a side's peer is the
        source of its first packet from ``peer_host``. An unspecified address (``0.0.0.0``,
        ``::``: Asterisk bound to all interfaces) means ``peer_host``."""
        if caller is not None:
            self._caller_peer = self._peer(caller)
        if agent is not None:
            self._agent_peer = self._peer(agent)

    def _peer(self, address: Address) -> Address:
        host = address[0] if address[0] not in ("", "0.0.0.0", "::") else self._peer_host
        return host, int(address[1])

    @property
    def hold_histogram(self) -> tuple[int, ...]:
        """Caller frames by hold time, 1 ms buckets (the last: 99 ms and more)."""
        return tuple(self._path.hold_histogram)

    @property
    def flushed_frames(self) -> int:
        """Caller frames released without their successor (deadline or close)."""
        return self._path.flushed_frames

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def evidence(self) -> Evidence:
        """Live counters (the final ones once closed)."""
        if self._final is not None:
            return self._final
        path = self._path
        flt = path.filter
        return Evidence(
            frames_relayed=flt.frames_out - self._caller_unsent,
            frames_flattened=flt.frames_flattened, digits_detected=flt.digits_detected,
            leaked_tone_frames=flt.leaked_tone_frames,
            packets_dropped=sum(self.drop_counts.values()),
            agent_frames_relayed=self._agent_frames, max_hold_ms=path.max_hold * 1000.0,
            mode=self._options.replacement)

    def close(self) -> Evidence:
        """Flush the held frame, close both sockets, cancel the timer; the final evidence."""
        if self._closed:
            return self.evidence
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            if self._loop is not None:
                flushed = self._path.flush(self._loop.time())
                if flushed is not None:
                    self._send_agent(flushed, self._loop.time())
        finally:
            self._close_transports()
            self._final = self.evidence
        logger.info("media relay closed: %s frames relayed, %s flattened, %s leaked, %s dropped",
                    *map(Figure, (self._final.frames_relayed, self._final.frames_flattened,
                                  self._final.leaked_tone_frames, self._final.packets_dropped)),
                    extra=self._log)
        return self._final

    def _close_transports(self) -> None:
        for transport in (self._caller, self._agent):
            if transport is not None and not transport.is_closing():
                transport.close()

    @property
    def drop_counts(self) -> dict[str, int]:
        """Why packets were dropped: malformed, unsupported (not PCMU), duplicate, late,
        foreign (source is not the peer), unsent (no peer known yet), backlog (the
        receiver still had that much to play: the delay is pulled back)."""
        drops = self._path.drops
        return {"malformed": drops.malformed + self._agent_malformed,
                "unsupported": drops.unsupported, "duplicate": drops.duplicate,
                "late": drops.late, "foreign": self._foreign, "unsent": self._unsent,
                "backlog": self._to_agent.dropped + self._to_caller.dropped}

    # -- datagram callbacks ------------------------------------------------------------------

    def _accept(self, side: str, peer: Address | None, addr: Address) -> bool:
        if peer is not None:
            if addr[0] == peer[0] and addr[1] == peer[1]:  # an IPv6 source is a 4-tuple
                return True
        elif addr[0] == self._peer_host:
            learned = (addr[0], addr[1])
            if side == "caller":
                self._caller_peer = learned
            else:
                self._agent_peer = learned
            logger.info("media relay learned the %s peer", side, extra=self._log)
            return True
        self._foreign += 1
        if self._foreign == 1:
            logger.warning("media relay drops packets from a foreign source on the %s side",
                           side, extra=self._log)
        return False

    def _from_caller(self, data: bytes, addr: Address) -> None:
        if self._closed or (addr != self._caller_peer
                             and not self._accept("caller", self._caller_peer, addr)):
            return
        assert self._loop is not None
        now = self._loop.time()
        for out in self._path.receive(data, now):
            self._send_agent(out, now)
        due = self._path.flush_due
        if self._timer is None and due is not None and not self._closed:  # on_digit may close
            self._timer = self._loop.call_at(due, self._deadline)

    def _from_agent(self, data: bytes, addr: Address) -> None:
        if self._closed or (addr != self._agent_peer
                             and not self._accept("agent", self._agent_peer, addr)):
            return
        if len(data) < HEADER_LEN or data[0] >> 6 != 2:
            self._agent_malformed += 1
            return
        peer = self._caller_peer
        if peer is None or self._caller is None:
            self._unsent += 1
            return
        assert self._loop is not None
        if self._to_caller.admit(memoryview(data)[HEADER_LEN:], self._loop.time()):
            self._caller.sendto(data, peer)
            self._agent_frames += 1

    def _deadline(self) -> None:
        self._timer = None
        due = self._path.flush_due
        if self._closed or due is None or self._loop is None:
            return
        now = self._loop.time()
        if now + _EARLY < due:  # a newer frame is held: wait for its own deadline
            self._timer = self._loop.call_at(due, self._deadline)
            return
        out = self._path.flush(now)
        if out is not None:
            self._send_agent(out, now)

    def _send_agent(self, out: Outgoing, now: float) -> None:
        peer = self._agent_peer
        if peer is None or self._agent is None or self._agent.is_closing():
            self._unsent += 1
            self._caller_unsent += 1
        elif self._to_agent.admit(memoryview(out.packet)[HEADER_LEN:], now):
            self._agent.sendto(out.packet, peer)
        else:  # dropped to pull the delay back (a key press still reaches on_digit)
            self._caller_unsent += 1
        if out.digit is not None and self._on_digit is not None:
            try:
                self._on_digit(out.digit, now)
            except Exception as exc:  # the key must not reach a traceback's locals dump
                logger.error("on_digit callback failed: %s", type(exc).__name__,
                             extra=self._log)

    def _socket_error(self, side: str, exc: Exception) -> None:
        logger.debug("media relay %s socket error: %s", side, type(exc).__name__,
                     extra=self._log)
