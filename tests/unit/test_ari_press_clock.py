"""When a key was pressed (``PressClock``), fed with a ``ChannelDtmfReceived`` frame recorded
from the sandbox Asterisk whose timestamp is moved: Asterisk's spacing between one channel's
keys survives a websocket that delivers them late and in a burst, and a re-queued END stays a
duplicate for the collector."""

import copy
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from callsec_ari.ari import models as m
from callsec_ari.ari.moments import MAX_DTMF_LAG, PressClock
from callsec_ari.core.digits import CollectorSpec, DigitCollector

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ari"
RECORDED = next(json.loads(line) for line in
                (FIXTURES / "dtmf_call.jsonl").read_text().splitlines()
                if '"ChannelDtmfReceived"' in line)


def frame(stamp: float, digit: str = "1", channel: str = "") -> m.ChannelDtmfReceived:
    raw: dict[str, Any] = copy.deepcopy(RECORDED)
    raw["digit"] = digit
    raw["timestamp"] = datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds")
    if channel:
        raw["channel"]["id"] = channel
    event = m.parse_event(raw)
    assert isinstance(event, m.ChannelDtmfReceived)
    return event


def collected(keys: list[tuple[str, float]]) -> int:
    collector = DigitCollector(CollectorSpec(min_digits=1, max_digits=30, auto_complete=False))
    for key, at in keys:
        collector.feed(key, at)
    return collector.count


@settings(max_examples=80, deadline=None)
@given(lag=st.floats(MAX_DTMF_LAG + 0.1, 20.0), gaps=st.lists(st.floats(0.1, 0.5), min_size=1,
                                                            max_size=15),
       burst=st.floats(0.0, 0.01))
def test_a_repeated_key_delivered_late_in_a_burst_stays_a_repeated_key(
        lag: float, gaps: list[float], burst: float) -> None:
    """The caller pressed "1" several times, ``gaps`` apart; the events reach callsec ``lag``
    seconds later (more than the clock-skew clamp), ``burst`` apart: every press counts."""
    clock = PressClock()
    stamp = time.time() - lag - sum(gaps)
    arrived = 1000.0
    keys = [("1", clock.at(frame(stamp), arrived))]
    for gap in gaps:
        stamp += gap
        arrived += burst
        keys.append(("1", clock.at(frame(stamp), arrived)))
    assert collected(keys) == len(gaps) + 1
    assert all(at <= 1000.0 + burst * len(gaps) for _, at in keys)  # never after arrival


def test_a_re_queued_end_with_the_same_timestamp_is_still_a_duplicate() -> None:
    clock = PressClock()
    stamp = time.time() - 5.0
    first = clock.at(frame(stamp), 1000.0)
    again = clock.at(frame(stamp), 1000.004)
    assert collected([("1", first), ("1", again)]) == 1


def test_channels_keep_their_own_spacing_and_a_forgotten_channel_starts_over() -> None:
    clock = PressClock()
    stamp = time.time() - MAX_DTMF_LAG - 5.0  # every event lags more than the clamp
    a1 = clock.at(frame(stamp, channel="a"), 1000.0)
    b1 = clock.at(frame(stamp + 0.3, channel="b"), 1000.001)
    a2 = clock.at(frame(stamp + 0.2, channel="a"), 1000.002)
    assert round(a2 - a1, 3) == 0.2
    assert round(b1 - (1000.001 - MAX_DTMF_LAG), 3) == 0.0  # b's first key: plain clamp
    clock.forget("a")
    a3 = clock.at(frame(stamp + 0.4, channel="a"), 1000.003)
    assert round(a3 - (1000.003 - MAX_DTMF_LAG), 3) == 0.0
