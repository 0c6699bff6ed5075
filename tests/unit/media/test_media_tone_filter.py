"""The one-frame look-ahead filter: tones never leave it, speech leaves it untouched."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callsec_ari.media import g711
from callsec_ari.media.dtmf import (
    FRAME,
    FrameAnalyser,
    LeakCounter,
    Released,
    Replacement,
    ToneFilter,
)
from tests.unit.media.signals import (
    DIGITS,
    dtmf,
    dtmf_sequence,
    noise,
    samples,
    silence,
    speech_like,
    to_frames,
    tone_frame_span,
)

ANALYSER = FrameAnalyser()


def run(frames: list[bytes], replacement: Replacement = "silence"
        ) -> tuple[ToneFilter[int], list[Released[int]]]:
    flt: ToneFilter[int] = ToneFilter(replacement=replacement)
    out = [r for i, frame in enumerate(frames) if (r := flt.push(frame, i)) is not None]
    last = flt.flush()
    return flt, out + ([last] if last is not None else [])


def leak_scan(frames: list[bytes]) -> int:
    """The filter's own leak scan, run over an arbitrary frame sequence."""
    counter = LeakCounter()
    for frame in frames:
        counter.feed(*ANALYSER.analyse(frame))
    return counter.count


@pytest.mark.parametrize("key", list(DIGITS))
@pytest.mark.parametrize("level", [-30.0, -15.0, 0.0])
@pytest.mark.parametrize("offset", [0, 37, 80, 159])
def test_every_key_is_flattened_from_its_first_frame_on(key: str, level: float,
                                                        offset: int) -> None:
    """Whatever sample of a frame the tone starts on, that frame is already flattened: the
    look-ahead sees the tone in the next frame before this one is sent."""
    lead = 3 * FRAME + offset
    signal = np.concatenate([np.zeros(lead), dtmf(key, 60, level), silence(100)])
    flt, out = run(to_frames(signal))
    tone_frames = set(tone_frame_span(lead, samples(60)))
    flattened = {r.tag for r in out if r.flattened}
    assert tone_frames <= flattened
    assert flattened <= {min(tone_frames) - 1, *tone_frames, max(tone_frames) + 1}
    assert [r.digit for r in out if r.digit] == [key]
    assert flt.leaked_tone_frames == 0


@pytest.mark.parametrize("replacement", ["silence", "tone"])
def test_leak_scan_finds_tones_in_the_input_and_none_in_the_output(
        replacement: Replacement) -> None:
    frames = to_frames(dtmf_sequence("4111#", [80] * 5, [60] * 5, -12.0, lead_ms=13))
    flt, out = run(frames, replacement)
    assert leak_scan(frames) >= 5 * 3  # each 80 ms tone: 3-4 frames
    assert leak_scan([r.payload for r in out]) == 0
    assert flt.leaked_tone_frames == 0


@pytest.mark.parametrize("seed", range(3))
def test_speech_passes_byte_identical_with_few_flattened_frames(seed: int) -> None:
    frames = to_frames(speech_like(10, seed) + noise(10, seed, -40.0))
    flt, out = run(frames)
    assert [r.tag for r in out] == list(range(len(frames)))
    untouched = [r for r in out if not r.flattened]
    assert all(r.payload is frames[r.tag] for r in untouched)
    assert flt.frames_flattened <= len(frames) // 100
    assert flt.leaked_tone_frames == 0


def test_noise_passes_untouched() -> None:
    frames = to_frames(noise(5, 1, -20.0, pink=True))
    flt, out = run(frames)
    assert flt.frames_flattened == 0 and all(r.payload is frames[r.tag] for r in out)


@settings(max_examples=60, deadline=None)
@given(
    keys=st.text(alphabet=DIGITS, min_size=1, max_size=8),
    data=st.data(),
    level=st.floats(-30.0, 0.0),
    lead=st.integers(0, 400),
    replacement=st.sampled_from(["silence", "tone"]),
)
def test_detected_digits_equal_the_synthesised_sequence(
        keys: str, data: st.DataObject, level: float, lead: int,
        replacement: Replacement) -> None:
    durations = st.integers(40, 200)
    tone_ms = data.draw(st.lists(durations, min_size=len(keys), max_size=len(keys)))
    gap_ms = data.draw(st.lists(durations, min_size=len(keys), max_size=len(keys)))
    signal = dtmf_sequence(keys, tone_ms, gap_ms, level, lead_ms=lead / 8)
    flt, out = run(to_frames(signal), replacement)
    assert "".join(r.digit for r in out if r.digit) == keys
    assert flt.digits_detected == len(keys)
    assert flt.leaked_tone_frames == 0
    position = samples(lead / 8)
    flattened = {r.tag for r in out if r.flattened}
    for on, off in zip(tone_ms, gap_ms, strict=True):
        assert set(tone_frame_span(position, samples(on))) <= flattened
        position += samples(on) + samples(off)


def test_a_tone_over_quieter_speech_is_still_flattened() -> None:
    speech = speech_like(1.0, 5, -26.0)
    signal = speech.copy()
    start = 2000
    signal[start:start + 800] += dtmf("6", 100, -10.0)
    _flt, out = run(to_frames(signal))
    assert set(tone_frame_span(start, 800)) <= {r.tag for r in out if r.flattened}
    assert [r.digit for r in out if r.digit] == ["6"]


def test_tone_replacement_is_one_quiet_440_hz_tone_with_continuous_phase() -> None:
    frames = to_frames(dtmf("0", 400, -5.0))
    _, out = run(frames, "tone")
    assert all(r.flattened for r in out)
    decoded = g711.decode(b"".join(r.payload for r in out)).astype(np.float64)
    assert -33.0 < g711.level_dbm0(decoded) < -27.0
    spectrum = np.abs(np.fft.rfft(decoded * np.hanning(len(decoded))))
    peak_hz = np.argmax(spectrum) * 8000 / len(decoded)
    assert abs(peak_hz - 440) < 5
    # continuous phase: no clicks at frame joints (sample steps stay those of a 440 Hz sine)
    amplitude = float(np.max(np.abs(decoded)))
    assert np.max(np.abs(np.diff(decoded))) < amplitude * 2 * np.pi * 440 / 8000 * 1.2


def test_silence_replacement_is_mu_law_silence() -> None:
    _, out = run(to_frames(dtmf("D", 100, -5.0)))
    assert {r.payload for r in out} == {bytes([g711.ULAW_SILENCE]) * FRAME}


def test_a_frame_released_by_deadline_is_flattened_on_any_sign_of_a_tone() -> None:
    """Frame N's successor is late: N goes out alone. If N carries the start of a tone (even a
    partial one that MAIN alone would let through), it is flattened."""
    signal = np.concatenate([np.zeros(FRAME + 90), dtmf("3", 9, -10.0)])
    frames = to_frames(signal)
    flt: ToneFilter[int] = ToneFilter()
    assert flt.push(frames[0], 0) is None
    assert flt.push(frames[1], 1) is not None
    released = flt.flush()
    assert released is not None and released.flattened and not flt.holding


def test_a_late_frame_before_the_held_one_uses_it_as_look_ahead() -> None:
    frames = to_frames(np.concatenate([silence(40), dtmf("2", 100, -10.0)]))
    flt: ToneFilter[int] = ToneFilter()
    flt.push(frames[0], 0)
    first = flt.push(frames[2], 2)  # frame 1 is overtaken by frame 2
    late = flt.push_before_held(frames[1], 1)
    # frame 0 went out with frame 2 as the next known frame (a tone): flattened, to be safe
    assert first is not None and first.tag == 0 and first.flattened
    assert late.tag == 1 and late.flattened  # its successor (held) is a tone
    assert flt.holding


@pytest.mark.parametrize("key", list("19*D"))
def test_edges_of_a_tone_whose_middle_frame_was_lost_are_flattened(key: str) -> None:
    """A 40 ms tone starting mid-frame covers half, full, half frame; the full one is lost.
    The halves alone are no MAIN tone, but a missing neighbour makes any sign of one count."""
    signal = np.concatenate([speech_like(0.1, 3, -30.0)[:2 * FRAME + 80], dtmf(key, 40, -10.0),
                             speech_like(0.1, 4, -30.0)])
    frames = to_frames(signal)
    flt: ToneFilter[int] = ToneFilter()
    out = [flt.push(frames[0], 0), flt.push(frames[1], 1), flt.push(frames[2], 2),
           flt.push(frames[4], 4, gap=True), flt.push(frames[5], 5), flt.flush()]
    flattened = {r.tag for r in out if r is not None and r.flattened}
    assert {2, 4} <= flattened and 0 not in flattened
    assert leak_scan([r.payload for r in out if r is not None]) == 0


def test_push_before_held_needs_a_held_frame() -> None:
    with pytest.raises(ValueError, match="held"):
        ToneFilter[int]().push_before_held(b"\xff" * FRAME, 0)


def test_unknown_replacement_is_refused() -> None:
    with pytest.raises(ValueError, match="replacement"):
        ToneFilter[int](replacement="music")  # type: ignore[arg-type]
