"""The media worker process (``[capture] media_worker = process``): a real child process, real
UDP on loopback. The media service opens relays in the worker, the caller's key tone is
flattened before the agent side, the key comes back to the flow over the worker's pipe, close
returns the worker's final evidence; a killed worker fails its captures cleanly and a new one
serves the next capture; nothing is left behind when callsec stops."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import AsyncIterator

import numpy as np
import pytest

from callsec_ari.capture import protocol as cp
from callsec_ari.capture.media_service import MediaFeature
from callsec_ari.capture.service import CaptureFeature
from callsec_ari.capture.sinks import VaultSink
from callsec_ari.capture.talkthrough import MEDIA_CALLER
from callsec_ari.config import CaptureSettings
from callsec_ari.core.events import DtmfReceived, LegGone
from callsec_ari.media import g711
from callsec_ari.media.process import ProcessRelay
from callsec_ari.runtime.dispatcher import Dispatcher
from callsec_ari.runtime.executor import CallExecutor
from callsec_ari.store.context import Store
from tests.harness.goertzel import detect_dtmf, dtmf_signal
from tests.integration.test_capture_media_service import (
    Posts,
    call,
    drain,
    peer,
    store,
    talk,
    voice,
)

__all__ = ["store"]  # the fixture


@contextlib.asynccontextmanager
async def running(feature: MediaFeature) -> AsyncIterator[asyncio.Task[None]]:
    """The feature's worker task, as app.py runs it (a TaskGroup, cancelled on stop)."""
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(feature.run(), name="media-worker")
        try:
            yield task
        finally:
            task.cancel()


def worker_feature(store: Store, posts: Posts) -> MediaFeature:
    settings = CaptureSettings(media_worker="process", talk_through_replacement="tone")
    feature = MediaFeature.from_store(store, posts, settings)  # type: ignore[arg-type]
    assert feature.worker is not None
    return feature


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def port_free(port: int) -> bool:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind(("127.0.0.1", port))
    except OSError:
        return False
    finally:
        probe.close()
    return True


async def test_worker_relays_flatten_the_key_tone_report_the_key_and_return_final_evidence(
        store: Store) -> None:
    posts, handle = Posts(), call()
    feature = worker_feature(store, posts)
    async with running(feature):
        (opened,) = await feature.open_media(handle, cp.OpenMedia(capture_id="CP-1"))
        assert isinstance(opened, cp.MediaOpened)
        assert feature.worker is not None and feature.worker.pid is not None
        assert feature.worker.pid != os.getpid()
        relay = feature.relays["call-1"][1]
        assert isinstance(relay, ProcessRelay)
        e1, e2 = peer(), peer()
        await feature.connect_media(handle, cp.ConnectMedia(
            capture_id="CP-1", caller=e1.getsockname(), agent=e2.getsockname()))
        sent = await talk(opened, e1, e2, np.concatenate(
            [voice(400, 1), dtmf_signal("7", tone_ms=120, gap_ms=0), voice(400, 2)]))
        to_agent, to_caller = await drain(e2), await drain(e1)

        heard = np.concatenate([g711.decode(p[12:]) for p in to_agent]).astype(np.float64)
        assert len(to_agent) == sent and detect_dtmf(heard / 32768) == []
        assert len(to_caller) == sent
        digits = [(cid, ev) for cid, ev in posts.events if isinstance(ev, DtmfReceived)]
        assert [(cid, d.leg, d.digit) for cid, d in digits] == [("call-1", "caller-media", "7")]

        (closed,) = await feature.close_media(handle, cp.CloseMedia(capture_id="CP-1"))
        assert isinstance(closed, cp.MediaClosed)
        evidence = dict(closed.evidence)
        assert evidence["frames_relayed"] == sent and evidence["agent_frames_relayed"] == sent
        assert evidence["digits_detected"] == 1 and evidence["leaked_tone_frames"] == 0
        assert int(evidence["frames_flattened"]) >= 6 and evidence["mode"] == "tone"
        assert relay.evidence.as_dict() == evidence  # the worker's final figures
        captures = CaptureFeature(store, Dispatcher(CallExecutor()), VaultSink(store.vault, "DE"))
        stored = (await captures.get("CP-1")).to_json()["media_evidence"]
        assert feature.verify(stored) and stored["evidence"] == evidence
        await asyncio.sleep(0.05)
        assert port_free(opened.caller_port) and port_free(opened.agent_port)
        e1.close()
        e2.close()


async def test_a_killed_worker_fails_its_captures_and_a_new_worker_serves_the_next(
        store: Store) -> None:
    posts = Posts()
    feature = worker_feature(store, posts)
    worker = feature.worker
    assert worker is not None
    async with running(feature):
        (first,) = await feature.open_media(call("call-1"), cp.OpenMedia(capture_id="CP-1"))
        assert isinstance(first, cp.MediaOpened)
        dead = worker.pid
        assert dead is not None
        os.kill(dead, signal.SIGKILL)
        async with asyncio.timeout(5):
            while not any(isinstance(ev, LegGone) for _, ev in posts.events):
                await asyncio.sleep(0.02)
        gone = [(cid, ev) for cid, ev in posts.events if isinstance(ev, LegGone)]
        assert [(cid, ev.leg, ev.cause) for cid, ev in gone] == [
            ("call-1", MEDIA_CALLER, "media_worker_lost")]
        # the flow tears the capture down: no evidence to sign, nothing stored, no error
        (closed,) = await feature.close_media(call("call-1"), cp.CloseMedia(capture_id="CP-1"))
        assert isinstance(closed, cp.MediaClosed) and closed.evidence == ()
        assert port_free(first.caller_port) and port_free(first.agent_port)

        handle = call("call-2")
        (opened,) = await feature.open_media(handle, cp.OpenMedia(capture_id="CP-2"))
        assert isinstance(opened, cp.MediaOpened)
        assert worker.pid not in (None, dead) and worker.starts == 2
        e1, e2 = peer(), peer()
        await feature.connect_media(handle, cp.ConnectMedia(
            capture_id="CP-2", caller=e1.getsockname(), agent=e2.getsockname()))
        sent = await talk(opened, e1, e2, voice(200, 3))
        assert len(await drain(e2)) == sent
        (closed,) = await feature.close_media(handle, cp.CloseMedia(capture_id="CP-2"))
        assert isinstance(closed, cp.MediaClosed)
        assert dict(closed.evidence)["frames_relayed"] == sent
        e1.close()
        e2.close()


async def test_no_worker_process_or_socket_is_left_after_shutdown(store: Store) -> None:
    posts = Posts()
    feature = worker_feature(store, posts)
    worker = feature.worker
    assert worker is not None
    async with running(feature):
        opened = [await feature.open_media(call(f"call-{i}"), cp.OpenMedia(capture_id=f"CP-{i}"))
                  for i in range(3)]
        pid = worker.pid
        assert pid is not None and alive(pid)
    feature.close_all()  # app.py's exit stack, after the TaskGroup
    assert worker.pid is None and not alive(pid)
    for (event,) in opened:
        assert isinstance(event, cp.MediaOpened)
        assert port_free(event.caller_port) and port_free(event.agent_port)


async def test_an_open_the_worker_cannot_serve_is_media_unavailable(store: Store) -> None:
    from callsec_ari.capture.errors import MediaUnavailable

    settings = CaptureSettings(media_worker="process", media_host="192.0.2.1")  # not ours
    feature = MediaFeature.from_store(store, Posts(), settings)  # type: ignore[arg-type]
    async with running(feature):
        with pytest.raises(MediaUnavailable) as failed:
            await feature.open_media(call(), cp.OpenMedia(capture_id="CP-1"))
        assert failed.value.details["reason"] == "RelayOpenFailed"
        assert feature.relays == {}


def test_inline_keeps_the_relays_on_callsecs_loop(store: Store) -> None:
    feature = MediaFeature.from_store(
        store, Posts(), CaptureSettings(media_worker="inline"))  # type: ignore[arg-type]
    assert feature.worker is None
