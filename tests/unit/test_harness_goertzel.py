"""The harness's Goertzel DTMF detector finds key tones, and only key tones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.harness.goertzel import (
    detect_dtmf,
    detect_dtmf_file,
    dtmf_signal,
    key_frequencies,
    silence,
    tone,
    write_wav,
)


def _as_float(samples: np.ndarray) -> np.ndarray:
    return samples.astype(np.float64) / 32768.0


@settings(max_examples=40, deadline=None)
@given(
    keys=st.text(alphabet="0123456789*#ABCD", min_size=1, max_size=8),
    tone_ms=st.integers(min_value=50, max_value=160),
    gap_ms=st.integers(min_value=45, max_value=150),
)
def test_detects_every_key_in_order(keys: str, tone_ms: int, gap_ms: int) -> None:
    found = detect_dtmf(_as_float(dtmf_signal(keys, tone_ms, gap_ms)))
    assert "".join(k for _, k in found) == keys


def test_reports_when_each_key_starts() -> None:
    found = detect_dtmf(_as_float(dtmf_signal("19", tone_ms=100, gap_ms=200)))
    assert [k for _, k in found] == ["1", "9"]
    assert abs(found[0][0] - 0.2) < 0.03
    assert abs(found[1][0] - 0.5) < 0.03


def test_silence_pure_tones_and_single_dtmf_frequencies_are_not_keys() -> None:
    for signal in (silence(1000), tone([1000.0], 1000), tone([697.0], 500),
                   tone([1336.0], 500), tone([350.0, 440.0], 1000)):
        assert detect_dtmf(_as_float(signal)) == []


def test_tones_below_the_level_threshold_are_ignored() -> None:
    quiet = _as_float(dtmf_signal("5", amplitude=0.002))  # about -57 dBFS
    assert detect_dtmf(quiet) == []
    assert [k for _, k in detect_dtmf(quiet, min_dbfs=-70.0)] == ["5"]


def test_keys_are_found_under_moderate_noise() -> None:
    rng = np.random.default_rng(7)
    signal = _as_float(dtmf_signal("0#", amplitude=0.3))
    noisy = signal + rng.normal(0.0, 0.01, size=signal.shape)
    assert [k for _, k in detect_dtmf(noisy)] == ["0", "#"]


def test_reads_the_keys_back_from_a_wav_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.wav"
    write_wav(path, dtmf_signal("*7D"))
    assert [k for _, k in detect_dtmf_file(path)] == ["*", "7", "D"]


def test_key_frequencies_follow_the_dtmf_grid() -> None:
    assert key_frequencies("5") == (770.0, 1336.0)
    assert key_frequencies("#") == (941.0, 1477.0)
