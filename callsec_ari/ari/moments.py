"""Two small pieces of the ARI adapter: when a key was really pressed, and the flow of a
``Stasis()`` line that names no callsec flow."""

from __future__ import annotations

import time

from callsec_ari.ari import models as m
from callsec_ari.core import commands as c
from callsec_ari.core import events as e

#: Asterisk's event ``timestamp`` moves a DTMF event's ``at`` back by at most this much.
MAX_DTMF_LAG = 2.0


def pressed_at(event: m.ChannelDtmfReceived, arrived: float) -> float:
    """When the key was pressed, on the loop clock: the arrival time moved back by how long
    the event took to reach us (Asterisk's ``timestamp``, up to :data:`MAX_DTMF_LAG`).

    Arrival times alone bunch up under load (a busy event loop, a burst on the websocket): two
    presses of the same key 200 ms apart in Asterisk could arrive 10 ms apart and be taken for
    one duplicated DTMF END by the collector's de-duplication window. With Asterisk's own
    spacing a repeated key stays a repeated key, and a re-queued END (same timestamp) stays a
    duplicate. A clock that is off (Asterisk on another host) only clamps back to arrival time.
    """
    if event.timestamp is None:
        return arrived
    lag = time.time() - event.timestamp.timestamp()
    return arrived - min(max(lag, 0.0), MAX_DTMF_LAG)


class ReturnToDialplan:
    """Flow for a Stasis() line that names no callsec flow: hand the channel straight back."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    @property
    def state_name(self) -> str:
        return "DONE" if self._done else "NEW"

    def handle(self, event: e.Event) -> list[c.Command]:
        if self._done:
            return []
        self._done = True
        if isinstance(event, e.CallerHungUp):
            return [c.Finish(result="hangup")]
        return [c.ContinueDialplan(), c.Finish(result="skipped")]
