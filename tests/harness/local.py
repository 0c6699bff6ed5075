"""A cheap caller on A itself: Local channels instead of SIP (for load tests).

``POST A/ari/channels?endpoint=Local/<number>@sandbox&app=sim-local-<pid>-<n>`` puts ``;1`` in the
harness's app and runs ``;2`` through A's dialplan (e.g. into ``Stasis(callsec,verify)``).
DTMF sent on ``;1`` arrives on ``;2``; ``LocalCall.peer_id`` is ``;2``'s channel id, the one
the product sees. No RTP, no SIP: use :class:`tests.harness.carrier.Carrier` for realism.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from types import TracebackType

from tests.harness.ari import AriClient, AriError, Channel, new_id
from tests.harness.sandbox import DEFAULT_CALLER_ID, A, Instance

#: Each client gets its own app name (see AriClient._wait_apps on reusing one).
_instances = itertools.count(1)

class LocalCall(Channel):
    """``;1`` of a Local channel pair; :attr:`peer_id` is ``;2`` (in A's dialplan)."""

    def __init__(self, client: AriClient, channel_id: str, peer_id: str, number: str) -> None:
        super().__init__(client, channel_id)
        self.peer_id = peer_id
        self.number = number


class LocalCaller:
    """Async context manager placing Local-channel calls on A."""

    def __init__(self, instance: Instance = A, *, app: str | None = None,
                 context: str = "sandbox") -> None:
        self.app = app or f"sim-local-{os.getpid()}-{next(_instances)}"
        self.context = context
        self.client = AriClient(instance, [self.app])
        self.calls: list[LocalCall] = []

    async def __aenter__(self) -> LocalCaller:
        await self.client.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            for call in self.calls:
                with contextlib.suppress(AriError):
                    await call.hangup()
        finally:
            await self.client.__aexit__(exc_type, exc, tb)

    async def call(self, number: str, caller_id: str = DEFAULT_CALLER_ID) -> LocalCall:
        """Start ``Local/<number>@<context>``; ``;1`` enters our app once ``;2`` answers."""
        channel_id, peer_id = new_id("local1"), new_id("local2")
        await self.client.request("POST", f"/channels/{channel_id}", params={
            "endpoint": f"Local/{number}@{self.context}", "app": self.app,
            "appArgs": "local", "callerId": caller_id, "otherChannelId": peer_id})
        call = LocalCall(self.client, channel_id, peer_id, number)
        self.calls.append(call)
        return call
