"""callsec's AMI client: a small typed interface over panoramisk 1.4 (pinned).

panoramisk parses the protocol and matches responses to actions; everything around it is ours:
:class:`AmiManager` is created inside the running loop, connects with a timeout and reports
refusals, timeouts and bad credentials as :class:`~callsec_ari.ami.errors.AmiError` subclasses.
panoramisk's own reconnects, pinger and re-sending of queued actions are switched off: a lost
connection fails the actions in flight and ends :meth:`AmiManager.wait_closed`; reconnecting is
:class:`callsec_ari.ami.link.AmiLink`'s job. panoramisk logs whole messages (DTMF events, channel
variables, the login secret), so it gets a logger of its own that stays silent.

Usage::

    async with AmiManager("127.0.0.1", 15038, "callsec", secret) as ami:
        outcome = await ami.mixmonitor_mute(channel_id, mute=True)

``MixMonitorMute`` on Asterisk 22 (observed on the sandbox): ``Success`` when the channel has a
MixMonitor; ``Error: Cannot set mute flag`` when it has none, which :meth:`mixmonitor_mute`
returns as :attr:`MuteOutcome.NO_RECORDING` (nothing records, so nothing can leak: a capture may
start); ``No such channel`` and ``Permission denied`` raise (a capture must not start).
Channels can be named by name (``PJSIP/pstn-00000001``) or by unique id (ARI's channel id).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import ssl as ssl_module
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, Self

from panoramisk.ami_protocol import AMIProtocol
from panoramisk.manager import Manager
from panoramisk.message import Message

from callsec_ari.ami.errors import (
    AmiActionError,
    AmiAuthError,
    AmiConnectionError,
    error_for_response,
)
from callsec_ari.ami.messages import AmiEvent, AmiSubscription, ConfigCategory, parse_config

__all__ = ["AmiEvent", "AmiManager", "AmiSubscription", "ConfigCategory", "Direction",
           "MuteOutcome", "parse_config"]

log = logging.getLogger(__name__)
#: Handed to panoramisk, which would log whole AMI messages (digits, secrets) at DEBUG and INFO.
_LIBRARY_LOG = logging.getLogger("callsec_ari.ami.panoramisk")
_LIBRARY_LOG.setLevel(logging.CRITICAL)
_LIBRARY_LOG.propagate = False

Direction = Literal["read", "write", "both"]
_NO_MIXMONITOR = "cannot set mute flag"


class MuteOutcome(enum.IntEnum):
    """What :meth:`AmiManager.mixmonitor_mute` did; the value is the number of MixMonitors
    affected as far as AMI tells (it mutes all of the channel's at once)."""

    #: The channel exists but no MixMonitor records it: nothing to mute.
    NO_RECORDING = 0
    APPLIED = 1


def _headers(message: Message) -> dict[str, str]:
    return {key: "\n".join(value) if isinstance(value, list) else str(value)
            for key, value in message.items()}


class _Panoramisk(Manager):  # type: ignore[misc]
    """panoramisk's Manager without its reconnects, pinger and queued re-sends."""

    def __init__(self, on_event: Callable[[Message], None], on_lost: Callable[[], None],
                 **config: Any) -> None:
        super().__init__(log=_LIBRARY_LOG, **config)
        self.loop = asyncio.get_running_loop()
        # Drop the FullyBooted -> send_awaiting_actions hook (it would spawn unowned tasks).
        self.callbacks.clear()
        self.patterns.clear()
        self.login_result: asyncio.Future[Message] = self.loop.create_future()
        self._on_event = on_event
        self._on_lost = on_lost

    def ping(self) -> None:
        """Disabled: :class:`~callsec_ari.ami.link.AmiLink` pings with a timeout instead."""

    def login(self, future: asyncio.Future[Message]) -> bool:
        self.authenticated_future = None
        if self.login_result.done():
            return False
        if future.cancelled() or future.exception() is not None:
            self.login_result.set_exception(AmiConnectionError("login was interrupted"))
            return False
        response = future.result()
        self.authenticated = bool(response.success)
        self.login_result.set_result(response)
        return self.authenticated

    def dispatch(self, event: Message) -> list[str]:
        self._on_event(event)
        return []

    def connection_lost(self, exc: BaseException | None) -> None:
        self._connected = False
        pinger: asyncio.TimerHandle | None = getattr(self, "pinger", None)
        if pinger is not None:
            pinger.cancel()
        self.pinger = None
        self.awaiting_actions.clear()
        self._on_lost()


class AmiManager:
    """One AMI connection (no reconnects). Create it inside the running event loop."""

    def __init__(self, host: str, port: int, username: str, secret: str, *,
                 timeout: float = 5.0, action_timeout: float = 5.0, events: bool = False,
                 ssl: ssl_module.SSLContext | None = None) -> None:
        if timeout <= 0 or action_timeout <= 0:
            raise ValueError("timeouts must be positive")
        self.server = f"{host}:{port}"
        self.username = username
        self.timeout = timeout
        self.action_timeout = action_timeout
        self._host, self._port, self._secret, self._events, self._ssl = (
            host, port, secret, events, ssl)
        self._pm: _Panoramisk | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._closed = asyncio.Event()
        self._pending: set[asyncio.Future[Any]] = set()
        self._subscriptions: list[AmiSubscription] = []

    def __repr__(self) -> str:
        return f"AmiManager(server={self.server!r}, username={self.username!r})"

    @property
    def connected(self) -> bool:
        return self._pm is not None and not self._closed.is_set()

    # -- lifecycle --------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect and log in within ``timeout``; raises :class:`AmiConnectionError` (refused,
        no answer) or :class:`AmiAuthError` (credentials or ACL refused)."""
        if self._pm is not None:
            raise RuntimeError("AmiManager.connect() may be called once")
        loop = asyncio.get_running_loop()
        pm = _Panoramisk(self._dispatch, self._lost, host=self._host, port=self._port,
                         username=self.username, secret=self._secret,
                         events="on" if self._events else "off", ssl=self._ssl)
        self._pm = pm
        try:
            async with asyncio.timeout(self.timeout):
                transport, protocol = await loop.create_connection(
                    AMIProtocol, self._host, self._port, ssl=self._ssl)
                self._transport = transport
                done: asyncio.Future[Any] = loop.create_future()
                done.set_result((transport, protocol))
                pm.connection_made(done)  # sends Login
                response = await pm.login_result
        except BaseException as exc:
            await self.close()
            if isinstance(exc, TimeoutError | OSError | AmiConnectionError):
                raise self._connect_error(exc) from None
            raise
        if not response.success:
            await self.close()
            raise AmiAuthError(
                f"AMI {self.server}: login as {self.username!r} refused"
                f" ({response.get('Message', 'no reason given')}); check the [ami] username and"
                " password, and the user's secret and permit= in Asterisk's manager.conf",
                server=self.server, action="Login", ami_message=str(response.get("Message", "")))
        log.info("AMI %s: logged in as %s", self.server, self.username)

    def _connect_error(self, exc: BaseException) -> AmiConnectionError:
        if isinstance(exc, TimeoutError):
            reason = f"no answer within {self.timeout:g}s"
        elif isinstance(exc, AmiConnectionError):
            reason = exc.message
        else:
            reason = f"cannot connect ({getattr(exc, 'strerror', None) or type(exc).__name__})"
        return AmiConnectionError(f"AMI {self.server}: {reason}", server=self.server,
                                  action="Login")

    async def close(self) -> None:
        if not self._closed.is_set():
            if self._pm is not None and self._pm.protocol is not None:
                self._pm.close()  # closes the transport; panoramisk skips connection_lost then
            elif self._transport is not None:
                self._transport.close()
        self._lost()

    async def wait_closed(self) -> None:
        """Return once the connection is gone (closed, lost, or Asterisk shut down)."""
        await self._closed.wait()

    def _lost(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        error = AmiConnectionError(f"AMI {self.server}: connection lost", server=self.server)
        for future in list(self._pending):
            if not future.done():
                future.set_exception(error)
        for subscription in list(self._subscriptions):
            subscription.fail(error)

    def _dispatch(self, message: Message) -> None:
        if not self._subscriptions:
            return
        name = str(message.get("Event", ""))
        event = AmiEvent(name=name, headers=_headers(message))
        for subscription in list(self._subscriptions):
            if subscription.matches(name):
                subscription.put(event)

    # -- events -----------------------------------------------------------------------------
    def subscribe(self, *patterns: str, maxsize: int = 1000) -> AmiSubscription:
        """Events named like ``patterns`` (e.g. ``"DTMF*"``); needs ``events=True``."""
        if not patterns:
            raise ValueError("subscribe() needs one or more event name patterns")
        subscription = AmiSubscription(patterns, maxsize, self._subscriptions.remove)
        self._subscriptions.append(subscription)
        if self._closed.is_set():
            subscription.fail(AmiConnectionError(f"AMI {self.server}: not connected",
                                                 server=self.server))
        return subscription

    # -- actions ----------------------------------------------------------------------------
    async def send(self, action: str, **headers: str) -> Message | list[Message]:
        """One action; its response (a list for event-list actions). Raises on ``Error``."""
        pm = self._pm
        if pm is None or self._closed.is_set() or pm.protocol is None:
            raise AmiConnectionError(f"AMI {self.server}: not connected", server=self.server,
                                     action=action)
        future: asyncio.Future[Any] = pm.send_action({"Action": action, **headers})
        self._pending.add(future)
        try:
            async with asyncio.timeout(self.action_timeout):
                result = await future
        except TimeoutError:
            raise AmiConnectionError(
                f"AMI {self.server}: {action}: no answer within {self.action_timeout:g}s",
                server=self.server, action=action) from None
        finally:
            self._pending.discard(future)
        first = result[0] if isinstance(result, list) else result
        if not first.success:
            raise error_for_response(str(first.get("Message", "")), server=self.server,
                                     action=action)
        return result

    async def _single(self, action: str, **headers: str) -> Message:
        result = await self.send(action, **headers)
        return result[0] if isinstance(result, list) else result

    async def ping(self) -> None:
        await self._single("Ping")

    async def mixmonitor_mute(self, channel: str, *, direction: Direction = "both",
                              mute: bool) -> MuteOutcome:
        """Mute (or unmute) what MixMonitor records of ``channel``: ``read`` (what the channel
        hears... from the caller's side: what Asterisk reads from it), ``write`` or ``both``.

        Returns :attr:`MuteOutcome.NO_RECORDING` when no MixMonitor runs on the channel; raises
        :class:`~callsec_ari.ami.errors.AmiNoSuchChannel`, ``AmiPermissionError`` (the user
        lacks write class ``call`` or ``system``) or ``AmiConnectionError``.
        """
        if direction not in ("read", "write", "both"):
            raise ValueError("direction must be read, write or both")
        try:
            await self._single("MixMonitorMute", Channel=channel, Direction=direction,
                               State="1" if mute else "0")
        except AmiActionError as exc:
            if type(exc) is AmiActionError and (exc.ami_message or "").lower() == _NO_MIXMONITOR:
                return MuteOutcome.NO_RECORDING
            raise
        return MuteOutcome.APPLIED

    async def getvar(self, channel: str, name: str) -> str:
        """A channel variable or function (``""`` when unset). The value may be sensitive:
        callers must not log it."""
        response = await self._single("Getvar", Channel=channel, Variable=name)
        return str(response.get("Value", ""))

    async def get_config_categories(self, filename: str) -> list[ConfigCategory]:
        """``GetConfig``: the file's categories in order (several may share a name, as in
        pjsip.conf). Needs write class ``system`` or ``config``; raises
        :class:`~callsec_ari.ami.errors.AmiConfigNotFound` for a missing file."""
        return parse_config(await self._single("GetConfig", Filename=filename))

    async def get_config(self, filename: str) -> dict[str, list[tuple[str, str]]]:
        """``GetConfig`` as ``{section: [(key, value), ...]}``; sections that share a name are
        concatenated in file order (use :meth:`get_config_categories` to keep them apart)."""
        merged: dict[str, list[tuple[str, str]]] = {}
        for category in await self.get_config_categories(filename):
            merged.setdefault(category.name, []).extend(category.items)
        return merged

    async def module_loaded(self, module: str) -> bool:
        """``ModuleCheck``: is ``app_mixmonitor`` (``.so`` optional) loaded?"""
        try:
            await self._single("ModuleCheck", Module=module.removesuffix(".so"))
        except AmiActionError as exc:
            if (exc.ami_message or "").lower() == "module not loaded":
                return False
            raise
        return True

    async def command(self, cmd: str) -> list[str]:
        """A CLI command's output lines. Needs write class ``command`` (the sandbox user and
        the sample user do not have it: ``AmiPermissionError``)."""
        response = await self._single("Command", Command=cmd)
        output = response.get("Output", "")
        lines = output if isinstance(output, list) else str(output).splitlines()
        return [str(line) for line in lines]
