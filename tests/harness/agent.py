"""The agents' phones: A's endpoints agent100..agent109 ring on B in ``Stasis(agents,<endpoint>)``.

:class:`AgentPhones` listens on B's app ``agents``, answers every call (unless told not to),
records the audio the phone receives (snoop + ``POST /channels/{id}/record``, a WAV on B's
spool) and keeps every ``ChannelDtmfReceived`` with a timestamp: what the agent could hear.

Only one process can listen on ``agents`` at a time (ARI: one websocket per app).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tests.harness.ari import AriClient, AriError, Channel, Event
from tests.harness.sandbox import B, Instance

APP = "agents"


@dataclass(frozen=True, kw_only=True)
class ReceivedDigit:
    digit: str
    duration_ms: int
    #: ``time.monotonic()`` when the harness received the event.
    received_at: float
    #: Asterisk's own ISO timestamp of the event.
    timestamp: str


@dataclass(kw_only=True)
class AgentCall:
    """One call that rang an agent's phone."""

    endpoint: str
    channel: Channel
    rang_at: float
    dtmf: list[ReceivedDigit] = field(default_factory=list)
    recording: Path | None = None
    recording_name: str | None = None

    @property
    def digits(self) -> str:
        return "".join(d.digit for d in self.dtmf)


class AgentPhones:
    """Async context manager playing every agent's phone on B."""

    def __init__(self, instance: Instance = B, *, auto_answer: bool = True,
                 record: bool = True) -> None:
        self.auto_answer = auto_answer
        self.record = record
        self.client = AriClient(instance, [APP], on_event=self._on_event)
        self.calls: list[AgentCall] = []
        self._by_channel: dict[str, AgentCall] = {}

    async def __aenter__(self) -> AgentPhones:
        await self.client.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            for call in self.calls:
                with contextlib.suppress(AriError):
                    await call.channel.hangup()
        finally:
            await self.client.__aexit__(exc_type, exc, tb)

    async def _on_event(self, event: Event) -> None:
        kind = event.get("type")
        if kind == "StasisStart":
            args = event.get("args") or []
            if args and args[0] != "snoop":
                await self._ring(str(args[0]), event)
        elif kind == "ChannelDtmfReceived":
            call = self._by_channel.get(event["channel"]["id"])
            if call is not None:
                call.dtmf.append(ReceivedDigit(
                    digit=event["digit"], duration_ms=int(event.get("duration_ms", 0)),
                    received_at=float(event["_received"]), timestamp=event.get("timestamp", "")))

    async def _ring(self, endpoint: str, event: Event) -> None:
        channel = self.client.channel(event["channel"]["id"])
        call = AgentCall(endpoint=endpoint, channel=channel, rang_at=time.monotonic())
        self.calls.append(call)
        self._by_channel[channel.id] = call
        try:
            if self.auto_answer:
                await channel.answer()
            if self.record:
                call.recording_name = f"{endpoint}-{channel.id}"
                call.recording = await channel.record(call.recording_name)
        except AriError as exc:
            if exc.status != 404:  # 404: A hung up before the phone could answer
                raise

    # --- what tests call -------------------------------------------------------------------

    def latest(self, endpoint: str) -> AgentCall:
        """The most recent call that rang ``endpoint``."""
        for call in reversed(self.calls):
            if call.endpoint == endpoint:
                return call
        raise LookupError(f"{endpoint} never rang")

    def seen(self, endpoint: str) -> frozenset[str]:
        """The channel ids of every call that rang ``endpoint`` so far: take it before placing
        a call that rings the agent at once, and pass it to :meth:`wait_ringing`."""
        return frozenset(c.channel.id for c in self.calls if c.endpoint == endpoint)

    async def wait_ringing(self, endpoint: str, timeout: float = 15.0,
                           known: frozenset[str] | None = None) -> AgentCall:
        """Wait for the next call to ``endpoint`` (answered already with auto_answer): one
        that is not in ``known`` (default: the calls seen when this is called, which misses a
        call that rang while the caller's own leg was still being answered)."""
        if known is None:
            known = self.seen(endpoint)
        await self.client.wait_event(
            lambda e: e.get("type") == "StasisStart" and (e.get("args") or [None])[0] == endpoint
            and e["channel"]["id"] not in known,
            timeout=timeout, what=f"{endpoint} ringing")
        return self.latest(endpoint)

    def dtmf_received(self, endpoint: str) -> list[ReceivedDigit]:
        """Every digit the latest call to ``endpoint`` received (what the agent heard)."""
        return list(self.latest(endpoint).dtmf)

    async def answer(self, endpoint: str) -> None:
        await self.latest(endpoint).channel.answer()

    async def play_tone(self, endpoint: str, frequency_hz: int = 1000,
                        duration_ms: int = 500) -> None:
        """The agent's phone sends a pure tone towards A (e.g. to prove an audio path)."""
        await self.latest(endpoint).channel.play_tone(f"{frequency_hz}", duration_ms)

    async def send_dtmf(self, endpoint: str, digits: str, between_ms: int = 120,
                        duration_ms: int = 120) -> None:
        """The agent presses keys (feature codes such as ``*1``)."""
        await self.latest(endpoint).channel.send_dtmf(digits, between_ms, duration_ms)

    async def hangup(self, endpoint: str) -> None:
        await self.latest(endpoint).channel.hangup()

    async def wait_hangup(self, endpoint: str, timeout: float = 10.0) -> Event:
        return await self.latest(endpoint).channel.wait_hangup(timeout)

    async def finish_recording(self, endpoint: str, timeout: float = 10.0) -> Path:
        """Stop the latest call's recording and return the finished WAV's host path."""
        call = self.latest(endpoint)
        if call.recording is None or call.recording_name is None:
            raise LookupError(f"{endpoint}: not recorded (record=False?)")
        await call.channel.stop_recording(call.recording_name, timeout=timeout)
        return call.recording
