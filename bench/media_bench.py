"""Talk-through media relay bench: N relays on loopback, real-time RTP in both directions.

A sender process plays N pairs of fake Asterisk media channels (E1 and E2 per relay): every
20 ms each E1 sends one μ-law frame of the caller's audio (speech-like signal with a burst of
four key tones every few seconds) and each E2 one frame of the agent's audio, the relays'
send times spread over the 20 ms period as Asterisk's RTP timers are. This process runs the N
:class:`~callsec_ari.media.relay.MediaRelay` objects in one event loop and measures its own
CPU time over the steady state. The sender reports what came back (loss, one-way delay through
each relay per direction). No sandbox needed.

    .venv/bin/python bench/media_bench.py [--relays 100] [--seconds 20] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import multiprocessing as mp
import pstats
import selectors
import socket
import struct
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from callsec_ari.media.dtmf import FRAME, key_frequencies
from callsec_ari.media.g711 import DBM0_POWER, encode
from callsec_ari.media.relay import FilterOptions, MediaRelay

PACE = 0.020
LOOP_SECONDS = 8.0
HEADER = struct.Struct("!BBHII")


def _speech(seconds: float, seed: int, level_dbm0: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 8000)) / 8000
    f0 = 150 + 60 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / 8000
    out = sum(np.sin(k * phase + rng.uniform(0, 6)) / k for k in range(1, 20))
    out = np.asarray(out) * (0.35 + 0.65 * np.abs(np.sin(2 * np.pi * 2.2 * t)))
    scaled: np.ndarray = out * np.sqrt(DBM0_POWER * 10 ** (level_dbm0 / 10) / np.mean(out * out))
    return scaled


def _caller_loop() -> list[bytes]:
    """LOOP_SECONDS of speech with four key tones (80 ms on, 80 ms off) in the middle."""
    signal = _speech(LOOP_SECONDS, 1, -18.0)
    t = np.arange(640) / 8000
    amplitude = np.sqrt(DBM0_POWER * 10 ** (-10 / 10))  # each tone at -13 dBm0
    start = int(3.0 * 8000)
    for i, key in enumerate("4711"):
        low, high = key_frequencies(key)
        at = start + i * 1280
        signal[at:at + 640] = amplitude * (np.sin(2 * np.pi * low * t)
                                           + np.sin(2 * np.pi * high * t)) / np.sqrt(2)
    data = encode(signal)
    return [data[i:i + FRAME] for i in range(0, len(data), FRAME)]


def _agent_loop() -> list[bytes]:
    data = encode(_speech(LOOP_SECONDS, 2, -20.0))
    return [data[i:i + FRAME] for i in range(0, len(data), FRAME)]


# -- the sender process ----------------------------------------------------------------------

def sender(conn: Connection, relays: int) -> None:
    socks = []
    for _ in range(2 * relays):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        socks.append(sock)
    conn.send([s.getsockname() for s in socks])
    targets, start, seconds = conn.recv()
    caller, agent = _caller_loop(), _agent_loop()
    selector = selectors.DefaultSelector()
    for index, sock in enumerate(socks):
        selector.register(sock, selectors.EVENT_READ, index)
    sent_at: dict[tuple[int, int], float] = {}
    delays: list[list[float]] = [[], []]  # caller->agent, agent->caller
    received = [0, 0]
    cpu0 = time.process_time()

    def drain(timeout: float) -> None:
        for key, _ in selector.select(timeout):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    break
                now = time.monotonic()
                index = key.data
                seq = HEADER.unpack_from(data)[2]
                # a packet arriving at E2 (odd socket) came from E1 through the filter
                direction = 0 if index % 2 else 1
                origin = index - 1 if index % 2 else index + 1
                t = sent_at.pop((origin, seq), None)
                if t is not None:
                    delays[direction].append(now - t)
                received[direction] += 1

    slots = int(seconds / PACE)
    offsets = [i * PACE / relays for i in range(relays)]
    for slot in range(slots):
        base = start + slot * PACE
        for i in range(relays):
            due = base + offsets[i]
            while (wait := due - time.monotonic()) > 0:
                drain(wait)
            seq = (slot + 1000 * i) & 0xFFFF
            frame_i = (slot + 37 * i) % len(caller)
            for side, frames, ssrc in ((0, caller, 0x1000 + i), (1, agent, 0x2000 + i)):
                packet = HEADER.pack(0x80, 0, seq, slot * FRAME, ssrc) + frames[frame_i]
                sock = socks[2 * i + side]
                sent_at[(2 * i + side, seq)] = time.monotonic()
                sock.sendto(packet, targets[i][side])
    end = time.monotonic() + 0.3
    while (wait := end - time.monotonic()) > 0:
        drain(wait)
    cpu = time.process_time() - cpu0
    conn.send({"sent_per_direction": slots * relays, "received": received,
               "delays": [np.percentile(np.array(d) * 1000, [50, 99, 100]).tolist() if d
                          else [] for d in delays], "sender_cpu_s": cpu})
    for sock in socks:
        sock.close()


# -- the relay side (this process) -----------------------------------------------------------

class PlainForwarder(MediaRelay):
    """The floor: the same sockets and callbacks, caller audio forwarded without the filter."""

    def _from_caller(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr == self._caller_peer and self._agent is not None and self._agent_peer:
            self._agent.sendto(data, self._agent_peer)


class GcWatch:
    """Pauses of the cyclic garbage collector (a suspect for loop lag)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._started)

    def stop(self) -> dict[str, float]:
        gc.callbacks.remove(self._callback)
        return {"collections": len(self.pauses),
                "max_ms": round(max(self.pauses, default=0.0) * 1000, 2),
                "total_ms": round(sum(self.pauses) * 1000, 1)}


class LagProbe:
    """How late the event loop runs a 5 ms timer (its scheduling delay)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lags: list[float] = []
        self._handle = loop.call_later(0.005, self._tick, loop.time() + 0.005)

    def _tick(self, due: float) -> None:
        now = self._loop.time()
        self._lags.append(now - due)
        self._handle = self._loop.call_at(now + 0.005, self._tick, now + 0.005)

    def stop(self) -> None:
        self._handle.cancel()

    def summary(self) -> dict[str, float]:
        lags = np.array(self._lags or [0.0]) * 1000
        return {"p50": round(float(np.percentile(lags, 50)), 2),
                "p99": round(float(np.percentile(lags, 99)), 2),
                "max": round(float(lags.max()), 2)}


async def run_relays(relays: int, seconds: float, warmup: float,
                     profile: bool = False, floor: bool = False) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    child = ctx.Process(target=sender, args=(there, relays), daemon=True)
    child.start()
    loop = asyncio.get_running_loop()
    peers = await loop.run_in_executor(None, here.recv)
    digits = [0]
    opened: list[MediaRelay] = []
    try:
        for i in range(relays):
            kind = PlainForwarder if floor else MediaRelay
            relay = kind(options=FilterOptions(),
                         on_digit=lambda _k, _t: digits.__setitem__(0, digits[0] + 1),
                         call_id=f"bench-{i}")
            await relay.open()
            opened.append(relay)
            relay.set_peers(caller=tuple(peers[2 * i]), agent=tuple(peers[2 * i + 1]))
        start = time.monotonic() + 0.5
        here.send(([(("127.0.0.1", r.caller_port), ("127.0.0.1", r.agent_port))
                    for r in opened], start, seconds))
        await asyncio.sleep(start + warmup - time.monotonic())
        lag, collector = LagProbe(loop), GcWatch()
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(start + seconds - time.monotonic())
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        lag.stop()
        gc_pauses = collector.stop()
        if profiler:
            profiler.disable()
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
        await asyncio.sleep(0.3)
        report = await loop.run_in_executor(None, here.recv)
    finally:
        evidence = [relay.close() for relay in opened]
        child.join(5)
    holds = np.array([e.max_hold_ms for e in evidence])
    histogram = np.sum([relay.hold_histogram for relay in opened], axis=0)
    cumulative = np.cumsum(histogram) / max(int(histogram.sum()), 1)

    def frame_hold(q: float) -> int:
        return int(np.searchsorted(cumulative, q)) + 1  # upper edge of the 1 ms bucket
    relayed = sum(e.frames_relayed + e.agent_frames_relayed for e in evidence)
    return {
        "relays": relays, "seconds": seconds, "steady_state_s": round(wall, 2),
        "relay_cpu_s": round(cpu, 3),
        "cpu_s_per_relay_s": round(cpu / (relays * wall), 6),
        "cpu_share_of_one_core": round(cpu / wall, 3),
        "packets_per_s_relayed": round(relayed / seconds),
        "max_hold_ms": {"p50": round(float(np.percentile(holds, 50)), 2),
                        "p99": round(float(np.percentile(holds, 99)), 2),
                        "max": round(float(holds.max()), 2)},
        "relays_over_40ms": int(np.sum(holds > 40.0)),
        "frame_hold_ms_upper": {"p50": frame_hold(0.5), "p99": frame_hold(0.99),
                                "p99.9": frame_hold(0.999)},
        "frames_held_over_40ms": int(histogram[40:].sum()),
        "frames_released_by_deadline": sum(r.flushed_frames for r in opened),
        "loop_lag_ms": lag.summary(),
        "gc_pauses": gc_pauses,
        "frames_flattened": sum(e.frames_flattened for e in evidence),
        "leaked_tone_frames": sum(e.leaked_tone_frames for e in evidence),
        "digits_detected": digits[0],
        "packets_dropped": sum(e.packets_dropped for e in evidence),
        "sender": report,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--relays", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", action="store_true", help="cProfile the relays (stderr)")
    parser.add_argument("--floor", action="store_true",
                        help="forward caller audio unfiltered (the cost of sockets and loop)")
    args = parser.parse_args()
    result = asyncio.run(run_relays(args.relays, args.seconds, args.warmup, args.profile,
                                    args.floor))
    result["mode"] = "floor (no filter)" if args.floor else "filter"
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
