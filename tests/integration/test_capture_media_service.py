"""The talk-through media service with real relays on loopback UDP and a real SQLite store:
two sockets play Asterisk's media channels E1 (caller side) and E2 (agent side). A key tone the
"caller" sends reaches the capture flow as a ``caller-media`` digit and never the "agent"
(independent Goertzel scan of what E2 received); the evidence is signed, stored with the
capture record and served by the capture API; no relay outlives its call."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from callsec_ari.capture import protocol as cp
from callsec_ari.capture.errors import MediaUnavailable
from callsec_ari.capture.media_service import MediaFeature, evidence_key
from callsec_ari.capture.service import CaptureFeature
from callsec_ari.capture.sinks import VaultSink
from callsec_ari.config import CaptureSettings
from callsec_ari.config_check import load_settings
from callsec_ari.core.events import DtmfReceived, Event
from callsec_ari.core.ports import CallHandle
from callsec_ari.logs import call_logger
from callsec_ari.media import g711
from callsec_ari.media.evidence import Evidence
from callsec_ari.probe.flow import ProbeFlow
from callsec_ari.runtime.dispatcher import Dispatcher
from callsec_ari.runtime.executor import CallExecutor
from callsec_ari.store.context import Store, init_keys, open_store
from tests.harness.goertzel import detect_dtmf, dtmf_signal

KEY = b"k" * 32
RATE = 8000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    config = tmp_path / "callsec.conf"
    config.write_text(f"[database]\nurl = sqlite:///{tmp_path / 'callsec.db'}\n"
                      f"[crypto]\nkeyring_dir = {tmp_path / 'keys'}\n", encoding="utf-8")
    settings = load_settings(config, env={})
    init_keys(settings)  # keys are created only on purpose
    opened = open_store(settings)
    yield opened
    opened.close()


class Posts:
    """The dispatcher's ``post`` (what the relay's in-band digits become)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Event]] = []

    def post(self, call_id: str, event: Event) -> bool:
        self.events.append((call_id, event))
        return True


def call(call_id: str = "call-1") -> CallHandle:
    return CallHandle(call_id=call_id, flow=ProbeFlow(call_id),
                      log=call_logger(logging.getLogger("test"), call_id))


def rtp(seq: int, payload: bytes, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc) + payload


def peer() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def drain(sock: socket.socket, quiet: float = 0.15) -> list[bytes]:
    loop = asyncio.get_running_loop()
    got: list[bytes] = []
    while True:
        try:
            async with asyncio.timeout(quiet):
                got.append(await loop.sock_recv(sock, 2048))
        except TimeoutError:
            return got


async def talk(opened: cp.MediaOpened, e1: socket.socket, e2: socket.socket,
               audio: np.ndarray[Any, np.dtype[np.int16]]) -> int:
    frames = [g711.encode(audio[i:i + 160]) for i in range(0, len(audio) - 159, 160)]
    for seq, frame in enumerate(frames):
        e1.sendto(rtp(seq, frame), ("127.0.0.1", opened.caller_port))
        e2.sendto(rtp(seq, g711.encode(voice(20, 10 + seq)), ssrc=99),
                  ("127.0.0.1", opened.agent_port))
        await asyncio.sleep(0.02)
    return len(frames)


def voice(ms: int, seed: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    """Band-limited noise at about -20 dBFS: speech-like energy, no pure tones."""
    rng = np.random.default_rng(seed)
    noise = np.convolve(rng.standard_normal(RATE * ms // 1000), np.ones(4) / 4, mode="same")
    return np.clip(noise * 3000, -32768, 32767).astype(np.int16)


async def open_feature(store: Store, posts: Posts, handle: CallHandle,
                       capture_id: str = "CP-1") -> tuple[MediaFeature, cp.MediaOpened]:
    feature = MediaFeature(store, posts, CaptureSettings(), key=KEY)  # type: ignore[arg-type]
    (opened,) = await feature.open_media(handle, cp.OpenMedia(capture_id=capture_id))
    assert isinstance(opened, cp.MediaOpened)
    return feature, opened


async def test_in_band_key_reaches_the_flow_not_the_agent_and_evidence_is_signed_and_stored(
        store: Store) -> None:
    posts, handle = Posts(), call()
    feature, opened = await open_feature(store, posts, handle)
    e1, e2 = peer(), peer()
    await feature.connect_media(handle, cp.ConnectMedia(
        capture_id="CP-1", caller=e1.getsockname(), agent=e2.getsockname()))
    audio = np.concatenate([voice(400, 1), dtmf_signal("5", tone_ms=120, gap_ms=0),
                            voice(400, 2)])
    sent = await talk(opened, e1, e2, audio)
    to_agent, to_caller = await drain(e2), await drain(e1)

    heard = np.concatenate([g711.decode(p[12:]) for p in to_agent]).astype(np.float64) / 32768
    assert len(to_agent) == sent  # every frame, the flattened ones included
    assert detect_dtmf(heard) == []
    assert [key for _, key in detect_dtmf(audio.astype(np.float64) / 32768)] == ["5"]  # control
    assert len(to_caller) == sent  # the agent's voice goes back unchanged
    digits = [ev for _, ev in posts.events if isinstance(ev, DtmfReceived)]
    assert [(d.leg, d.digit) for d in digits] == [("caller-media", "5")]

    (closed,) = await feature.close_media(handle, cp.CloseMedia(capture_id="CP-1"))
    assert isinstance(closed, cp.MediaClosed)
    evidence = dict(closed.evidence)
    assert evidence["digits_detected"] == 1 and evidence["leaked_tone_frames"] == 0
    assert int(evidence["frames_flattened"]) >= 6
    assert feature.relays == {}
    captures = CaptureFeature(store, Dispatcher(CallExecutor()), VaultSink(store.vault, "DE"))
    stored = (await captures.get("CP-1")).to_json()["media_evidence"]
    assert stored["evidence"] == Evidence.from_dict(stored["evidence"]).as_dict()
    assert feature.verify(stored)
    assert not feature.verify({**stored, "evidence": {**stored["evidence"],
                                                      "leaked_tone_frames": 0,
                                                      "frames_flattened": 0}})
    assert await feature.close_media(handle, cp.CloseMedia(capture_id="CP-1")) == ()
    e1.close()
    e2.close()


async def test_the_evidence_key_is_derived_from_the_audit_key(store: Store) -> None:
    feature = MediaFeature.from_store(store, Posts(), CaptureSettings())  # type: ignore[arg-type]
    assert feature._key == evidence_key(store.keyring.audit_key())
    assert feature._key != store.keyring.audit_key()


async def test_relays_never_outlive_their_call_or_callsec(store: Store) -> None:
    posts = Posts()
    feature, first = await open_feature(store, posts, call("call-1"))
    await feature.open_media(call("call-2"), cp.OpenMedia(capture_id="CP-2"))
    relays = {call_id: relay for call_id, (_, relay) in feature.relays.items()}
    assert set(relays) == {"call-1", "call-2"}
    feature.call_finished(call("call-1"))
    assert set(feature.relays) == {"call-2"} and relays["call-1"].closed
    feature.close_all()
    assert feature.relays == {} and relays["call-2"].closed
    await asyncio.sleep(0.05)  # the loop releases the sockets on its next iteration
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", first.caller_port))  # the port is free again
    probe.close()


async def test_a_relay_that_cannot_open_is_media_unavailable(store: Store) -> None:
    class Refusing:
        closed = False
        caller_port = agent_port = 0

        def __init__(self, **_: Any) -> None:
            pass

        def set_peers(self, *, caller: tuple[str, int] | None = None,
                      agent: tuple[str, int] | None = None) -> None:
            raise AssertionError("never connected")

        async def open(self) -> None:
            raise OSError("no port")

        def close(self) -> Evidence:
            self.closed = True
            return Evidence()

    feature = MediaFeature(store, Posts(), CaptureSettings(), key=KEY,  # type: ignore[arg-type]
                           relay_factory=Refusing)
    with pytest.raises(MediaUnavailable):
        await feature.open_media(call(), cp.OpenMedia(capture_id="CP-1"))
    assert feature.relays == {}
    with pytest.raises(MediaUnavailable):
        await feature.connect_media(call(), cp.ConnectMedia(
            capture_id="CP-1", caller=("127.0.0.1", 1), agent=("127.0.0.1", 2)))
