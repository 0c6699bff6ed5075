"""The carrier: instance B places real SIP calls to A (``PJSIP/<number>@pbx``).

    async with Carrier() as carrier:
        call = await carrier.call("1000", caller_id="+4915112345678")
        await call.wait_up()
        await call.send_dtmf("123456#")
        await call.hangup()

The app name defaults to ``sim-<pid>-<n>``, new for every carrier: ARI delivers an app's
events to one websocket only, so two test processes sharing a name would steal each other's
events, and a name reused at once can lose its registration (see ``AriClient._wait_apps``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from types import TracebackType

from tests.harness.ari import AriClient, AriError, Channel, new_id
from tests.harness.sandbox import DEFAULT_CALLER_ID, B, Instance

#: Each client gets its own app name (see AriClient._wait_apps on reusing one).
_instances = itertools.count(1)

class CarrierCall(Channel):
    """One call the carrier placed; its channel lives on B."""

    def __init__(self, client: AriClient, channel_id: str, number: str) -> None:
        super().__init__(client, channel_id)
        self.number = number

    async def keep_media_flowing(self) -> None:
        """Send silence (continuous RTP) towards A until the next playback on this channel.

        In-band DTMF needs media after the tones: A's detector reports a digit only once
        more audio follows, so a carrier that goes quiet loses the last digit. B also runs
        with ``transmit_silence = yes``, so digits sent with :meth:`send_dtmf` are followed
        by silence anyway; this keeps audio flowing between bursts too, like a real phone.
        (A mixing bridge playing a silent file, tried first, garbled in-band digits: the
        bridge's audio and the DTMF tone generator fight over the channel.)
        """
        await super().keep_media_flowing()


class Carrier:
    """Async context manager: places calls from B and receives their events."""

    def __init__(self, instance: Instance = B, *, app: str | None = None,
                 trunk: str = "pbx") -> None:
        self.app = app or f"sim-{os.getpid()}-{next(_instances)}"
        self.trunk = trunk
        self.client = AriClient(instance, [self.app])
        self.calls: list[CarrierCall] = []

    async def __aenter__(self) -> Carrier:
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

    async def call(
        self, number: str, caller_id: str = DEFAULT_CALLER_ID, *, ring_timeout: int = 30,
    ) -> CarrierCall:
        """Dial ``number`` on A through B's trunk; returns at once (the call is ringing)."""
        channel_id = new_id("carrier")
        await self.client.request("POST", f"/channels/{channel_id}", params={
            "endpoint": f"PJSIP/{number}@{self.trunk}", "app": self.app, "appArgs": "carrier",
            "callerId": caller_id, "timeout": ring_timeout})
        call = CarrierCall(self.client, channel_id, number)
        self.calls.append(call)
        return call
