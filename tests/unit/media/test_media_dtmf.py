"""The per-frame DTMF detector, the digit tracker and the leak counter."""

from __future__ import annotations

import numpy as np
import pytest

from callsec_ari.media import g711
from callsec_ari.media.dtmf import (
    IS_EDGE,
    IS_LEAK,
    IS_MAIN,
    DigitTracker,
    FrameAnalyser,
    LeakCounter,
    key_frequencies,
)
from tests.unit.media.signals import DIGITS, dtmf, noise, speech_like, to_frames

ANALYSER = FrameAnalyser()


def count_tone_frames(payloads: list[bytes], flag: int) -> int:
    """How many frames one configuration calls a tone, singly."""
    return sum(bool(ANALYSER.analyse(p)[1] & flag) for p in payloads)


@pytest.mark.parametrize("key", list(DIGITS))
@pytest.mark.parametrize("level", [-30.0, -20.0, -10.0, 0.0])
@pytest.mark.parametrize("twist", [-4.0, 0.0, 8.0])
def test_every_key_at_every_level_and_twist_is_a_main_detection(
        key: str, level: float, twist: float) -> None:
    frames = to_frames(dtmf(key, 100, level, twist, phase=0.7))
    for frame in frames:
        found, flags = ANALYSER.analyse(frame)
        assert found == key
        assert flags == IS_MAIN | IS_LEAK | IS_EDGE


def test_a_tone_far_below_the_minimum_level_is_ignored() -> None:
    assert ANALYSER.analyse(to_frames(dtmf("5", 20, -60.0))[0]) == (None, 0)


def test_a_tone_between_the_main_and_the_leak_level_is_only_a_leak_detection() -> None:
    key, flags = ANALYSER.analyse(to_frames(dtmf("9", 20, -46.0))[0])
    assert key == "9" and flags & IS_LEAK and not flags & IS_MAIN


def test_a_single_frequency_is_not_a_key() -> None:
    t = np.arange(160) / 8000
    for freq in key_frequencies("1") + (440.0, 1000.0):
        frame = g711.encode(8000 * np.sin(2 * np.pi * freq * t))
        assert ANALYSER.analyse(frame) == (None, 0)


def test_a_half_filled_edge_frame_extends_a_run_but_is_not_main() -> None:
    signal = np.concatenate([np.zeros(80), dtmf("7", 10, -10.0)])
    key, flags = ANALYSER.analyse(to_frames(signal)[0])
    assert key == "7" and flags & IS_EDGE and not flags & IS_MAIN


@pytest.mark.parametrize("seed", range(4))
def test_speech_like_signals_are_rarely_called_tones(seed: int) -> None:
    frames = to_frames(speech_like(10, seed))
    assert count_tone_frames(frames, IS_MAIN) <= len(frames) // 200


@pytest.mark.parametrize("pink", [False, True])
def test_noise_is_never_a_tone(pink: bool) -> None:
    frames = to_frames(noise(5, 3, -20.0, pink=pink))
    assert count_tone_frames(frames, IS_EDGE) == 0


def _feed(tracker: DigitTracker, pattern: list[tuple[str | None, int]]) -> list[str]:
    return [d for d in (tracker.feed(k, f) for k, f in pattern) if d is not None]


M, E = IS_MAIN | IS_LEAK | IS_EDGE, IS_EDGE


def test_a_press_is_reported_once_when_it_ends() -> None:
    assert _feed(DigitTracker(), [("5", E), ("5", M), ("5", M), ("5", E), (None, 0)]) == ["5"]


def test_a_single_frame_or_edges_only_is_not_a_press() -> None:
    assert _feed(DigitTracker(), [("5", M), (None, 0), ("6", E), ("6", E), (None, 0)]) == []


def test_a_press_without_a_following_non_tone_frame_is_not_reported_yet() -> None:
    assert _feed(DigitTracker(), [("5", M), ("5", M)]) == []


def test_a_direct_key_change_ends_the_first_press() -> None:
    assert _feed(DigitTracker(), [("1", M), ("1", M), ("2", M), ("2", M), (None, 0)]) == [
        "1", "2"]


def test_leak_counter_needs_two_neighbouring_frames_of_one_key() -> None:
    counter = LeakCounter()
    for key, flags in [("3", IS_LEAK), (None, 0), ("3", IS_LEAK), ("4", IS_LEAK),
                       ("3", IS_EDGE), ("3", IS_EDGE)]:
        counter.feed(key, flags)
    assert counter.count == 0
    for key, flags in [("8", IS_LEAK), ("8", IS_LEAK), ("8", IS_LEAK), (None, 0)]:
        counter.feed(key, flags)
    assert counter.count == 3


def test_key_frequencies_reject_non_keys_without_echoing_them() -> None:
    with pytest.raises(ValueError, match="not a DTMF key") as caught:
        key_frequencies("55")
    assert "55" not in str(caught.value)
