"""The relay's receiver backlog (``media.pacing``): steady or jittery frames all go out; after
a stall the burst that would keep the added delay is dropped, silent frames first."""

from __future__ import annotations

from callsec_ari.media.pacing import Backlog, silent

QUIET = bytes([0xFF]) * 160          # digital silence
VOICE = bytes([0x1F, 0x9F] * 80)     # loud
HUSH = bytes([0x6A, 0xEA] * 80)      # |sample| 212: below -42 dBFS


def test_silence_test_on_ulaw_levels() -> None:
    assert silent(QUIET) and silent(HUSH)
    assert not silent(VOICE) and not silent(HUSH[:-1] + b"\x60")


def test_steady_and_jittery_frames_all_go_out() -> None:
    backlog = Backlog()
    jitter = [0.0, 0.008, -0.006, 0.012, -0.009, 0.004]
    for i in range(3000):
        assert backlog.admit(VOICE, i * 0.020 + jitter[i % len(jitter)])
    assert backlog.dropped == 0


def _play_out(frames: list[tuple[float, bytes]]) -> tuple[list[float], Backlog]:
    """Send times -> when each admitted frame is played by a receiver that plays one frame
    per 20 ms as they come (what Asterisk's bridge does); the delay of each played frame."""
    backlog, played_until, delays = Backlog(), 0.0, []
    for at, payload in frames:
        if backlog.admit(payload, at):
            played_until = max(played_until, at) + 0.020
            delays.append(played_until - at - 0.020)
    return delays, backlog


def test_a_stall_does_not_leave_its_length_in_the_delay() -> None:
    frames = []
    for i in range(500):
        at = i * 0.020
        if 100 <= i < 110:  # the input stalled 200 ms: ten frames come in one burst
            at = 110 * 0.020
        frames.append((at, VOICE if i % 4 else QUIET))
    delays, backlog = _play_out(frames)
    assert max(delays) <= 0.045 + 1e-9
    assert delays[-1] <= 0.025 + 1e-9  # pulled back by the pauses
    assert backlog.dropped >= 7 and backlog.dropped_silent >= 1


def test_silent_frames_go_first() -> None:
    backlog = Backlog()
    assert backlog.admit(VOICE, 0.0) and backlog.admit(VOICE, 0.0)
    assert not backlog.admit(QUIET, 0.0)  # 40 ms queued ahead: a pause is dropped
    assert backlog.admit(VOICE, 0.0)  # voice still goes
    assert not backlog.admit(VOICE, 0.0)  # 60 ms queued ahead: not even voice
    assert (backlog.dropped_silent, backlog.dropped_voiced) == (1, 1)
