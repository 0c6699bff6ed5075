"""The application's one AMI connection, kept up by a reconnect loop.

:meth:`AmiLink.run` is a task in the application's TaskGroup: it connects, pings every
``keepalive`` seconds (a ping that gets no answer counts as a lost connection), and on any loss
waits (exponential backoff with full jitter, as the ARI client does) and connects again. A wrong
password does not stop it: the operator may fix ``manager.conf`` and reload. While AMI is down
the application keeps running; :meth:`AmiLink.mixmonitor_mute` then raises
:class:`~callsec_ari.ami.errors.AmiConnectionError`, which the capture feature reports as
``recording_mute_unavailable``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from callsec_ari.ami.errors import AmiAuthError, AmiConnectionError, AmiError
from callsec_ari.ami.manager import AmiManager, Direction, MuteOutcome
from callsec_ari.config import AmiSettings
from callsec_ari.core.backoff import ReconnectBackoff

__all__ = ["AmiLink"]

log = logging.getLogger(__name__)

ManagerFactory = Callable[[], AmiManager]


class AmiLink:
    """A reconnecting holder of one :class:`AmiManager`; the capture feature's AMI port."""

    def __init__(self, factory: ManagerFactory, *, server: str, reconnect_min: float = 0.5,
                 reconnect_max: float = 30.0, keepalive: float = 20.0,
                 stable_after: float = 10.0, rng: random.Random | None = None) -> None:
        if not 0 < reconnect_min <= reconnect_max or keepalive <= 0:
            raise ValueError("need 0 < reconnect_min <= reconnect_max and keepalive > 0")
        self.server = server
        self._factory = factory
        self._backoff = ReconnectBackoff(reconnect_min, reconnect_max, rng or random.Random())
        self._keepalive = keepalive
        self._stable_after = stable_after
        self._manager: AmiManager | None = None
        self._up = asyncio.Event()
        #: Successful logins after the first one (for metrics).
        self.reconnects = 0

    @classmethod
    def from_settings(cls, ami: AmiSettings, *, reconnect_min: float = 0.5,
                      reconnect_max: float = 30.0, timeout: float = 5.0) -> AmiLink:
        def factory() -> AmiManager:
            return AmiManager(ami.host, ami.port, ami.username, ami.password,
                              timeout=timeout, action_timeout=timeout)

        return cls(factory, server=f"{ami.host}:{ami.port}", reconnect_min=reconnect_min,
                   reconnect_max=reconnect_max)

    @property
    def connected(self) -> bool:
        return self._manager is not None and self._manager.connected

    async def wait_connected(self) -> None:
        await self._up.wait()

    def manager(self) -> AmiManager:
        """The live connection; raises :class:`AmiConnectionError` while AMI is down."""
        manager = self._manager
        if manager is None or not manager.connected:
            raise AmiConnectionError(f"AMI {self.server}: not connected", server=self.server)
        return manager

    async def mixmonitor_mute(self, channel: str, *, direction: Direction = "both",
                              mute: bool) -> MuteOutcome:
        """:meth:`AmiManager.mixmonitor_mute` on the live connection."""
        return await self.manager().mixmonitor_mute(channel, direction=direction, mute=mute)

    async def getvar(self, channel: str, name: str) -> str:
        return await self.manager().getvar(channel, name)

    # -- the reconnect loop -----------------------------------------------------------------
    async def run(self) -> None:
        """Connect, watch, reconnect; returns only by cancellation."""
        loop = asyncio.get_running_loop()
        logins = 0
        down_reported = False
        while True:
            first_level = logging.WARNING
            try:
                async with self._factory() as manager:
                    logins += 1
                    self.reconnects = max(0, logins - 1)
                    log.info("AMI %s: connected", self.server)
                    down_reported = False
                    started = loop.time()
                    await self._hold(manager)
                    if loop.time() - started >= self._stable_after:
                        self._backoff.reset()
                reason = "connection lost"
            except AmiAuthError as exc:
                reason, first_level = exc.message, logging.ERROR
            except AmiError as exc:
                reason = exc.message
            delay = self._backoff.next_delay()
            if down_reported:
                log.info("AMI %s: still down (%s); retrying in %.2fs", self.server, reason, delay)
            else:
                log.log(first_level, "AMI %s: down (%s); reconnecting in %.2fs (MixMonitor"
                        " recordings cannot be muted meanwhile)", self.server, reason, delay)
                down_reported = True
            await asyncio.sleep(delay)

    async def _hold(self, manager: AmiManager) -> None:
        """Publish ``manager`` until its connection ends (or stops answering pings)."""
        self._manager = manager
        self._up.set()
        try:
            while True:
                try:
                    async with asyncio.timeout(self._keepalive):
                        await manager.wait_closed()
                    return
                except TimeoutError:
                    await manager.ping()
        except AmiConnectionError:
            return
        finally:
            self._up.clear()
            self._manager = None
