"""Audio and cleanliness checks for the talk-through sandbox tests.

The **test voice signal** is speech-shaped noise: white noise band-limited to the telephone band
(300-3400 Hz) under a syllabic on/off envelope (bursts of 120-320 ms, pauses of 40-140 ms, at
about -24 dBFS), written as a WAV into B's recording spool and played with ``recording:...``.
Why not a speech file: noise holds no tonal components, so it can never "talk off" a DTMF
detector (a false key would test the detector, not the relay), and its autocorrelation is one
sharp peak, so a cross-correlation finds the path delay to the sample.

It is injected with a *whisper* snoop (``whisper=out``): the snoop channel's playback is mixed
into what the carrier's (or the agent's) channel sends, while that channel itself stays free
for DTMF. An audiohook whispers only into frames the channel writes, so the channel also gets
``POST /channels/{id}/silence`` (a silence generator) to write frames all the time.

:func:`best_lag` is a normalised cross-correlation over one window of a recording against the
reference: ``rec[t] ≈ g * ref[t - lag]``; it returns the correlation coefficient (1.0: the
window is exactly a scaled copy of the reference) and the lag.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
import numpy.typing as npt

from tests.harness.ari import AriClient, AriError, new_id
from tests.harness.goertzel import read_wav, write_wav
from tests.harness.sandbox import B

RATE = 8000
FloatArray = npt.NDArray[np.float64]


def voice_signal(seconds: float, seed: int, rms_dbfs: float = -24.0) -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(seed)
    count = int(seconds * RATE)
    spectrum = np.fft.rfft(rng.standard_normal(count))
    freqs = np.fft.rfftfreq(count, 1.0 / RATE)
    spectrum[(freqs < 300) | (freqs > 3400)] = 0
    noise = np.fft.irfft(spectrum, count)
    envelope = np.zeros(count)
    at = 0
    while at < count:
        burst = int(rng.uniform(0.12, 0.32) * RATE)
        envelope[at:at + burst] = rng.uniform(0.5, 1.0)
        at += burst + int(rng.uniform(0.04, 0.14) * RATE)
    shaped = noise * np.convolve(envelope, np.ones(80) / 80, mode="same")  # 10 ms ramps
    shaped *= 32768 * 10 ** (rms_dbfs / 20) / np.sqrt(np.mean(shaped ** 2))
    return np.clip(np.round(shaped), -32768, 32767).astype(np.int16)


def write_reference(name: str, seconds: float, seed: int) -> FloatArray:
    """The signal as B plays it (``recording:<name>``); its samples in [-1, 1]."""
    samples = voice_signal(seconds, seed)
    write_wav(B.recording_dir / f"{name}.wav", samples)
    return samples.astype(np.float64) / 32768.0


@dataclass
class Whisper:
    """A snoop channel on B whispering a recording into ``channel_id``'s outgoing audio."""

    client: AriClient
    channel_id: str
    snoop_id: str = ""

    async def start(self, recording: str) -> None:
        self.snoop_id = new_id("whisper")
        await self.client.request("POST", f"/channels/{self.channel_id}/silence")
        await self.client.request(
            "POST", f"/channels/{self.channel_id}/snoop/{self.snoop_id}",
            params={"spy": "none", "whisper": "out", "app": self.client.apps[0],
                    "appArgs": "snoop"})
        for _ in range(100):  # the snoop enters Stasis a moment after the answer
            try:
                await self.client.request("POST", f"/channels/{self.snoop_id}/play",
                                          params={"media": f"recording:{recording}"})
                return
            except AriError as exc:
                if exc.status != 409:
                    raise
                await asyncio.sleep(0.02)
        raise AriError("POST", f"/channels/{self.snoop_id}/play", 409, "snoop never in Stasis")

    async def keep_writing(self) -> None:
        """After DTMF (which ends the silence generator): frames again, so the whisper goes on."""
        await self.client.request("POST", f"/channels/{self.channel_id}/silence",
                                  allow=(404, 409))

    async def stop(self) -> None:
        if self.snoop_id:
            await self.client.request("DELETE", f"/channels/{self.snoop_id}", allow=(404,))


@dataclass
class Monitor:
    """A wall-clock faithful recording on B of what both phones receive.

    A recording of one channel (or of its snoop) is a sequence of the frames that arrived: a
    path that delays every frame by 40 ms shifts nothing in it. A softmix bridge mixes on its
    own 20 ms clock and puts silence where a member had no frame in time, so a later arrival
    becomes a later position in the bridge's recording. Members: a snoop of what the agent's
    phone receives and one of what the caller's phone receives, plus the bridge's recorder:
    three, so Asterisk picks ``softmix`` (two would be passed through frame by frame).
    """

    client: AriClient
    name: str
    members: tuple[str, ...] = ()

    async def start(self, *channel_ids: str) -> Path:
        bridge = self.name
        await self.client.request("POST", "/bridges", params={"type": "mixing",
                                                               "bridgeId": bridge})
        snoops = []
        for channel_id in channel_ids:
            snoop = new_id("monitor")
            await self.client.request("POST", f"/channels/{channel_id}/snoop/{snoop}", params={
                "spy": "in", "whisper": "none", "app": self.client.apps[0], "appArgs": "snoop"})
            snoops.append(snoop)
        for snoop in snoops:
            for _ in range(100):
                try:
                    await self.client.request("POST", f"/bridges/{bridge}/addChannel",
                                              params={"channel": snoop, "absorbDTMF": True})
                    break
                except AriError as exc:
                    if exc.status not in (409, 422):
                        raise
                    await asyncio.sleep(0.02)
        self.members = tuple(snoops)
        await self.client.request("POST", f"/bridges/{bridge}/record", params={
            "name": bridge, "format": "wav", "ifExists": "overwrite", "terminateOn": "none"})
        return B.recording_dir / f"{bridge}.wav"

    async def stop(self) -> None:
        await self.client.request("POST", f"/recordings/live/{self.name}/stop", allow=(404,))
        await self.client.wait_event(
            lambda e: e.get("type") in ("RecordingFinished", "RecordingFailed")
            and e["recording"]["name"] == self.name, timeout=10, what="monitor recording")
        for snoop in self.members:
            await self.client.request("DELETE", f"/channels/{snoop}", allow=(404,))
        await self.client.request("DELETE", f"/bridges/{self.name}", allow=(404,))


def best_lag(recording: FloatArray, reference: FloatArray, start: float, window: float,
             *, search: tuple[float, float] = (-3.0, 30.0)) -> tuple[float, float]:
    """(correlation, lag seconds) of ``recording[start:start+window]`` against the reference,
    over lags in ``search`` (the reference began ``lag`` seconds into the recording)."""
    w0, width = int(start * RATE), int(window * RATE)
    x = recording[w0:w0 + width]
    if len(x) < width:
        raise ValueError("the window runs past the recording")
    lo = w0 - int(search[1] * RATE)
    hi = w0 - int(search[0] * RATE) + width
    padded = np.concatenate([np.zeros(max(0, -lo)), reference[max(lo, 0):max(hi, 0)]])
    padded = np.concatenate([padded, np.zeros(max(0, hi - lo - len(padded)))])
    size = 1 << int(np.ceil(np.log2(len(padded) + width)))
    dots = np.fft.irfft(np.fft.rfft(padded, size) * np.conj(np.fft.rfft(x, size)), size)
    dots = dots[:len(padded) - width + 1]
    sums = np.concatenate([[0.0], np.cumsum(padded ** 2)])
    energy = sums[width:] - sums[:-width]
    ncc = dots / np.sqrt(np.maximum(energy * float(np.sum(x ** 2)), 1e-20))
    k = int(np.argmax(ncc))
    return float(ncc[k]), (w0 - (lo + k)) / RATE


def correlation_over(path: Path, reference: FloatArray, start: float, end: float, *,
                     window: float = 1.0) -> list[tuple[float, float, float]]:
    """(window start, correlation, lag) for consecutive windows between ``start`` and ``end``."""
    recording, rate = read_wav(path)
    assert rate == RATE, rate
    out = []
    at = start
    while at + window <= min(end, len(recording) / RATE):
        corr, lag = best_lag(recording, reference, at, window)
        out.append((at, corr, lag))
        at += window
    return out


# --- nothing left behind --------------------------------------------------------------------

async def unicast_channels(ari_a: aiohttp.ClientSession) -> list[str]:
    async with ari_a.get("/ari/channels") as resp:
        return [str(ch["name"]) for ch in await resp.json()
                if str(ch["name"]).startswith("UnicastRTP/")]


async def capture_bridges(ari_a: aiohttp.ClientSession) -> list[str]:
    async with ari_a.get("/ari/bridges") as resp:
        return [str(b["id"]) for b in await resp.json()
                if str(b["id"]).startswith("callsec-capture-")]


def with_children(pid: int) -> list[int]:
    """``pid`` and its child processes (callsec's media worker holds the relay sockets)."""
    pids = [pid]
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            pids += [int(child) for child in children.read_text().split()]
        except OSError:  # the thread ended meanwhile
            continue
    return pids


def udp_sockets(pid: int) -> list[str]:
    """``ss -uanp`` lines of UDP sockets the process ``pid`` (or its media worker) holds."""
    out = subprocess.run(["ss", "-uanp"], capture_output=True, text=True, timeout=10,
                         check=True).stdout
    mark = re.compile(rf"pid=({'|'.join(str(p) for p in with_children(pid))}),")
    return [line for line in out.splitlines() if mark.search(line)]


async def wait_clean(ari_a: aiohttp.ClientSession, pid: int,
                     timeout: float = 10.0) -> tuple[list[str], list[str], list[str]]:
    """Until A has no UnicastRTP channel and no capture bridge and ``pid`` no UDP socket;
    what is left at the end (three empty lists when clean)."""
    left: tuple[list[str], list[str], list[str]] = ([], [], [])
    try:
        async with asyncio.timeout(timeout):
            while True:
                left = (await unicast_channels(ari_a), await capture_bridges(ari_a),
                        udp_sockets(pid))
                if left == ([], [], []):
                    return left
                await asyncio.sleep(0.2)
    except TimeoutError:
        return left
