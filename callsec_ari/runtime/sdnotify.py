"""systemd's notify protocol (sd_notify(3)): ``READY=1``, ``WATCHDOG=1``, ``STOPPING=1``.

A few lines over an ``AF_UNIX`` datagram socket to ``$NOTIFY_SOCKET`` (a path, or an abstract
name written ``@name``) instead of a dependency: ``systemd-python`` needs libsystemd's headers
to build, and the small pure-Python ``sdnotify`` package has seen no release since 2017. With
no ``$NOTIFY_SOCKET`` (not started by systemd) every call does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None) -> None:
        self.address: str | bytes | None = None
        if address:
            self.address = b"\0" + address[1:].encode() if address.startswith("@") else address

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        return cls((os.environ if env is None else env).get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, state: str) -> bool:
        """One datagram; a failure is logged, never raised (systemd may be gone)."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(state.encode(), self.address)
        except OSError as exc:
            log.warning("sd_notify %s failed: %s", state.split("=", 1)[0], exc.strerror,
                        extra={"call_id": "-"})
            return False
        return True


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds (systemd's advice), or ``None`` when the watchdog
    is off or meant for another process (``$WATCHDOG_PID``)."""
    env = os.environ if env is None else env
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2 / 1e6 if usec > 0 else None


async def watchdog(notifier: Notifier, interval: float) -> None:
    """``WATCHDOG=1`` every ``interval`` seconds from a task on the event loop: a loop that is
    stuck sends none, and systemd restarts the service (``Restart=on-failure``)."""
    log.info("systemd watchdog: a ping every %.1f s", interval, extra={"call_id": "-"})
    while True:
        notifier.send("WATCHDOG=1")
        await asyncio.sleep(interval)
