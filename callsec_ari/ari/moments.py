"""Two small pieces of the ARI adapter: when a key was really pressed, and the flow of a
``Stasis()`` line that names no callsec flow."""

from __future__ import annotations

import time

from callsec_ari.ari import models as m
from callsec_ari.core import commands as c
from callsec_ari.core import events as e

#: Asterisk's event ``timestamp`` moves a DTMF event's ``at`` back by at most this much: a
#: bound for a skewed clock, above what an overloaded Asterisk really lags (5-8 s seen at 100
#: talk-through captures on 2 cores). A key's time decides little across events (a code's
#: expiry, by at most this much), and only differences between keys matter within an entry.
MAX_DTMF_LAG = 10.0


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


class PressClock:
    """:func:`pressed_at` that keeps Asterisk's spacing between one channel's keys.

    The clamp at :data:`MAX_DTMF_LAG` guards against a skewed clock, but under a heavy load
    events can lag more than that: then every key of a burst got ``arrived - clamp``, and
    two presses of the same key 200 ms apart in Asterisk, delivered 4 ms apart, fell into the
    collector's de-duplication window (with a 2 s clamp, a card number with repeated digits
    lost keys at 100 talk-through captures). So a key whose ``timestamp`` is later than the
    channel's previous key's is placed at least that much after it (never after its own
    arrival); a re-queued END (the same timestamp) gets no such spacing and stays a duplicate.
    """

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, float]] = {}  # channel -> (Asterisk stamp, at)

    def at(self, event: m.ChannelDtmfReceived, arrived: float) -> float:
        at = pressed_at(event, arrived)
        if event.timestamp is None:
            return at
        stamp = event.timestamp.timestamp()
        last = self._last.get(event.channel.id)
        if last is not None and stamp > last[0]:
            at = min(arrived, max(at, last[1] + (stamp - last[0])))
        self._last[event.channel.id] = (stamp, at)
        return at

    def forget(self, channel_id: str) -> None:
        self._last.pop(channel_id, None)


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
