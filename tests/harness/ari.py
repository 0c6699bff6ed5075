"""A deliberately small ARI client for the test harness (plain aiohttp).

It shares no code with ``callsec_ari.ari`` on purpose: a bug in the product's client must
not be able to hide in the tests that check the product. One :class:`AriClient` holds a REST
session and one events websocket for a set of apps; every event it receives is kept in
``events`` so tests can wait for, and later inspect, exactly what Asterisk sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any
from uuid import uuid4

import aiohttp

from tests.harness.sandbox import Instance

logger = logging.getLogger(__name__)

Event = dict[str, Any]
EventHandler = Callable[[Event], Awaitable[None]]
Params = Mapping[str, str | int | float | bool]


class AriError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> {status}: {body[:300]}")
        self.status = status
        self.body = body


def _query(params: Params | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid4().hex[:16]}"


class AriClient:
    """REST + events websocket for ``apps`` on one sandbox instance.

    ``on_event`` (optional) is awaited by the reader for every event, in order, before waiters
    see it; it must not wait for further events itself (it runs on the reader).
    """

    def __init__(
        self, instance: Instance, apps: Sequence[str], *, on_event: EventHandler | None = None,
        request_timeout: float = 10.0,
    ) -> None:
        self.instance = instance
        self.apps = tuple(apps)
        self.events: list[Event] = []
        self._on_event = on_event
        self._request_timeout = request_timeout
        self._cond = asyncio.Condition()
        self._closed: str | None = None
        self._handler_errors: list[BaseException] = []
        self._stack = AsyncExitStack()
        self._session: aiohttp.ClientSession | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AriClient:
        stack = self._stack
        self._session = await stack.enter_async_context(aiohttp.ClientSession(
            base_url=self.instance.base_url,
            headers={"Authorization": self.instance.basic_auth},
            timeout=aiohttp.ClientTimeout(total=self._request_timeout),
        ))
        ws = await stack.enter_async_context(self._session.ws_connect(
            "/ari/events", params={"app": ",".join(self.apps), "subscribeAll": "false"},
            heartbeat=20.0, timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
        ))
        group = await stack.enter_async_context(asyncio.TaskGroup())
        self._reader = group.create_task(self._read(ws), name=f"ari-reader-{self.apps[0]}")
        await self._wait_apps(registered=True)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
        # The body's exception propagates by itself: handing it to the TaskGroup would only
        # wrap it in an ExceptionGroup.
        try:
            await self._stack.__aexit__(None, None, None)
        finally:
            await self._wait_apps(registered=False)
        if self._handler_errors and exc is None:
            raise self._handler_errors[0]

    async def _wait_apps(self, *, registered: bool, timeout: float = 3.0) -> None:
        """Wait (bounded) until Asterisk lists this client's apps, or no longer does.

        Asterisk tears a closed websocket's app down on its own thread: a client that
        registers the same name before that teardown ran gets "Replacing Stasis app", and
        the late teardown then destroys the new registration, so the next call into the app
        fails with "Stasis app doesn't exist". Waiting for the app to be gone on exit makes
        the next client with that name start clean.
        """
        want = 200 if registered else 404
        async with aiohttp.ClientSession(
            base_url=self.instance.base_url,
            headers={"Authorization": self.instance.basic_auth},
            timeout=aiohttp.ClientTimeout(total=self._request_timeout),
        ) as session:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    for app in self.apps:
                        while True:
                            async with session.get(f"/ari/applications/{app}") as resp:
                                if resp.status == want:
                                    break
                            await asyncio.sleep(0.02)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("AriClient used outside 'async with'")
        return self._session

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                event: Event = json.loads(message.data)
                event["_received"] = time.monotonic()
                await self._dispatch(event)
            reason = f"events websocket closed ({ws.close_code})"
        except aiohttp.ClientError as exc:
            reason = f"events websocket failed: {exc!r}"
        async with self._cond:
            self._closed = reason
            self._cond.notify_all()

    async def _dispatch(self, event: Event) -> None:
        if self._on_event is not None:
            try:
                await self._on_event(event)
            except (AriError, aiohttp.ClientError, OSError, ValueError, KeyError) as exc:
                logger.exception("event handler failed on %s", event.get("type"))
                self._handler_errors.append(exc)
        async with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    async def request(
        self, method: str, path: str, *, params: Params | None = None,
        body: Any = None, allow: Sequence[int] = (),
    ) -> Any:
        """``method /ari<path>``; JSON answer or None. Statuses in ``allow`` answer None."""
        async with self.session.request(
            method, f"/ari{path}", params=_query(params), json=body,
        ) as response:
            text = await response.text()
            if response.status >= 300:
                if response.status in allow:
                    return None
                raise AriError(method, path, response.status, text)
            return json.loads(text) if text else None

    async def wait_event(
        self, predicate: Callable[[Event], bool], *, timeout: float = 10.0, since: int = 0,
        what: str = "event",
    ) -> Event:
        """First event (from index ``since``) matching ``predicate``, waiting up to ``timeout``."""
        index = since
        try:
            async with asyncio.timeout(timeout), self._cond:
                while True:
                    for event in self.events[index:]:
                        if predicate(event):
                            return event
                    index = len(self.events)
                    if self._handler_errors:
                        raise self._handler_errors[0]
                    if self._closed:
                        raise AriError("WS", "/ari/events", 0, self._closed)
                    await self._cond.wait()
        except TimeoutError:
            seen = [e.get("type") for e in self.events[since:]][-15:]
            raise TimeoutError(f"no {what} within {timeout} s (last events: {seen})") from None

    async def wait_events(
        self, predicate: Callable[[Event], bool], count: int, *, timeout: float = 10.0,
        since: int = 0, what: str = "events",
    ) -> list[Event]:
        """Wait until ``count`` events match; return all that matched by then."""
        deadline = time.monotonic() + timeout

        def enough(_: Event) -> bool:
            return sum(1 for e in self.events[since:] if predicate(e)) >= count

        try:
            await self.wait_event(enough, timeout=max(0.0, deadline - time.monotonic()),
                                  since=since, what=what)
        except TimeoutError:
            got = [e for e in self.events[since:] if predicate(e)]
            raise TimeoutError(f"{len(got)} of {count} {what} within {timeout} s") from None
        return [e for e in self.events[since:] if predicate(e)]

    def channel(self, channel_id: str) -> Channel:
        return Channel(self, channel_id)


def is_event(event: Event, kind: str, channel_id: str | None = None) -> bool:
    """``event`` is of type ``kind`` (about channel ``channel_id`` when given)."""
    if event.get("type") != kind:
        return False
    return channel_id is None or event.get("channel", {}).get("id") == channel_id


class Channel:
    """Operations on one channel of an :class:`AriClient`'s instance."""

    def __init__(self, client: AriClient, channel_id: str) -> None:
        self.client = client
        self.id = channel_id
        self._recordings: dict[str, str] = {}  # recording name -> snoop channel id

    def __repr__(self) -> str:
        return f"<Channel {self.id} on {self.client.instance.name}>"

    def events(self, kind: str | None = None) -> list[Event]:
        return [e for e in self.client.events
                if e.get("channel", {}).get("id") == self.id and kind in (None, e.get("type"))]

    async def state(self) -> str | None:
        info = await self.client.request("GET", f"/channels/{self.id}", allow=(404,))
        return None if info is None else str(info["state"])

    async def answer(self) -> None:
        await self.client.request("POST", f"/channels/{self.id}/answer")

    async def wait_up(self, timeout: float = 10.0) -> None:
        """Wait until the channel is in this client's app (``StasisStart``) and answered.

        A channel originated into the app enters it only once answered; checking the
        state alone would let a test act before ARI accepts operations on the channel.
        """
        deadline = time.monotonic() + timeout
        await self.client.wait_event(lambda e: is_event(e, "StasisStart", self.id),
                                     timeout=timeout, what=f"StasisStart {self.id}")
        if await self.state() == "Up":
            return
        await self.client.wait_event(
            lambda e: is_event(e, "ChannelStateChange", self.id) and e["channel"]["state"] == "Up",
            timeout=max(0.0, deadline - time.monotonic()), what=f"{self.id} Up")

    async def send_dtmf(
        self, digits: str, between_ms: int = 120, duration_ms: int = 120, *, wait: bool = True,
    ) -> None:
        """Send ``digits`` (RFC 4733 or in-band per the endpoint's dtmf_mode).

        ARI answers at once and sends in the background; ``wait`` sleeps until the last
        digit has gone out.
        """
        await self.client.request("POST", f"/channels/{self.id}/dtmf", params={
            "dtmf": digits, "between": between_ms, "duration": duration_ms})
        if wait:
            await asyncio.sleep(len(digits) * (between_ms + duration_ms) / 1000 + 0.1)

    async def play(self, media: str, *, wait: bool = False, timeout: float = 30.0) -> str:
        """Start ``media`` (``sound:...``, ``tone:...``, ``recording:...``); the playback id.

        Note: while it plays, later operations on the same channel (DTMF!) queue behind it.
        ``tone:`` media never finish on their own: use :meth:`play_tone`.
        """
        playback_id = new_id("pb")
        since = len(self.client.events)
        await self.client.request("POST", f"/channels/{self.id}/play/{playback_id}",
                                  params={"media": media})
        if wait:
            await self.client.wait_event(
                lambda e: e.get("type") == "PlaybackFinished"
                and e["playback"]["id"] == playback_id,
                timeout=timeout, since=since, what=f"PlaybackFinished {playback_id}")
        return playback_id

    async def keep_media_flowing(self) -> None:
        """Send silence (continuous RTP) until the next playback on this channel.

        In-band DTMF needs media after the tones: a detector reports a digit only once
        more audio follows, so a sender that goes quiet loses its last digit.
        """
        await self.client.request("POST", f"/channels/{self.id}/silence")

    async def stop_playback(self, playback_id: str) -> None:
        await self.client.request("DELETE", f"/playbacks/{playback_id}", allow=(404,))

    async def play_tone(self, tone: str, duration_ms: int) -> None:
        """Play an indication tone string (``'!697+1209/200'``, ``'1000'``) for ``duration_ms``.

        ARI plays ``tone:`` media until stopped (no PlaybackFinished on its own), so this
        stops it after ``duration_ms``.
        """
        playback_id = await self.play(f"tone:{tone}")
        await asyncio.sleep(duration_ms / 1000)
        await self.stop_playback(playback_id)

    async def get_var(self, name: str) -> str | None:
        answer = await self.client.request(
            "GET", f"/channels/{self.id}/variable", params={"variable": name}, allow=(404,))
        return None if answer is None else str(answer.get("value", ""))

    async def hangup(self, reason: str = "normal") -> None:
        await self.client.request("DELETE", f"/channels/{self.id}", params={"reason": reason},
                                  allow=(404,))

    async def wait_hangup(self, timeout: float = 10.0) -> Event:
        """Wait until the channel is gone; its ``ChannelDestroyed`` or ``StasisEnd`` event.

        An app hears no more of a channel once it left Stasis, so after ``StasisEnd`` this
        polls ``GET /channels/{id}`` until it answers 404.
        """
        deadline = time.monotonic() + timeout
        event = await self.client.wait_event(
            lambda e: is_event(e, "ChannelDestroyed", self.id) or is_event(e, "StasisEnd", self.id),
            timeout=timeout, what=f"ChannelDestroyed {self.id}")
        while event["type"] == "StasisEnd" and await self.state() is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.id} left Stasis but still exists after {timeout} s")
            await asyncio.sleep(0.1)
        return event

    async def record(self, name: str, *, spy: str = "in", fmt: str = "wav") -> Path:
        """Record what the channel receives (``spy='in'``) through a snoop channel.

        Recording the channel itself would block its other operations (DTMF, playbacks);
        the snoop does not. Returns the file's host path; it is complete after
        :meth:`stop_recording` or once the channel hangs up.
        """
        snoop_id = new_id("snoop")
        await self.client.request("POST", f"/channels/{self.id}/snoop/{snoop_id}", params={
            "spy": spy, "app": self.client.apps[0], "appArgs": "snoop"})
        self._recordings[name] = snoop_id
        params: Params = {"name": name, "format": fmt, "ifExists": "overwrite",
                          "terminateOn": "none"}
        for _ in range(50):  # the snoop enters Stasis a moment after POST .../snoop answers
            try:
                await self.client.request("POST", f"/channels/{snoop_id}/record", params=params)
                break
            except AriError as exc:
                if exc.status != 409:
                    raise
                await asyncio.sleep(0.02)
        else:
            raise AriError("POST", f"/channels/{snoop_id}/record", 409, "snoop never in Stasis")
        return self.client.instance.recording_dir / f"{name}.{fmt}"

    async def stop_recording(self, name: str, *, timeout: float = 10.0) -> None:
        """Stop recording ``name`` and wait until Asterisk has finished the file."""
        done = [e for e in self.client.events
                if e.get("type") in ("RecordingFinished", "RecordingFailed")
                and e["recording"]["name"] == name]
        if not done:
            await self.client.request("POST", f"/recordings/live/{name}/stop", allow=(404,))
            await self.client.wait_event(
                lambda e: e.get("type") in ("RecordingFinished", "RecordingFailed")
                and e["recording"]["name"] == name, timeout=timeout,
                what=f"RecordingFinished {name}")
        snoop_id = self._recordings.pop(name, None)
        if snoop_id is not None:
            with contextlib.suppress(AriError):
                await self.client.request("DELETE", f"/channels/{snoop_id}", allow=(404,))
