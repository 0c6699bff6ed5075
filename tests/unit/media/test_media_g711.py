"""μ-law tables: the G.711 reference values, exact round trips, bounded quantisation error."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from callsec_ari.media import g711


def test_decoding_matches_the_reference_coder_at_the_extremes() -> None:
    assert g711.decode(bytes([0x00, 0x80, 0xFF, 0x7F])).tolist() == [-32124, 32124, 0, 0]


def test_digital_milliwatt_decodes_to_a_0_dbm0_sine() -> None:
    # G.711 table 5: the periodic sequence that carries a 1 kHz tone at 0 dBm0.
    milliwatt = bytes([0x1E, 0x0B, 0x0B, 0x1E, 0x9E, 0x8B, 0x8B, 0x9E])
    assert abs(g711.level_dbm0(g711.decode(milliwatt))) < 0.25


def test_every_code_survives_decode_then_encode() -> None:
    codes = bytes(range(256))
    again = g711.encode(g711.decode(codes))
    # 0x7F is negative zero: it decodes to 0 like 0xFF and is encoded back as 0xFF.
    assert again == codes.replace(b"\x7f", b"\xff")


def test_encoding_is_monotonic_in_the_sample_value() -> None:
    ramp = np.arange(-32768, 32768, dtype=np.int16)
    decoded = g711.decode(g711.encode(ramp)).astype(np.int32)
    assert np.all(np.diff(decoded) >= 0)


@given(st.lists(st.integers(-32768, 32767), min_size=1, max_size=200))
def test_quantisation_error_stays_within_half_a_step(values: list[int]) -> None:
    samples = np.array(values, dtype=np.int16)
    back = g711.decode(g711.encode(samples)).astype(np.int64)
    clipped = np.clip(samples.astype(np.int64), -32124, 32124)
    # μ-law steps are 1/16 of the segment: the error is at most ~1/32 of the magnitude + 4.
    assert np.all(np.abs(back - clipped) <= np.abs(clipped) / 31 + 8)


def test_float_input_is_rounded_and_clipped() -> None:
    assert g711.encode(np.array([1e9, -1e9, 0.4])) == g711.encode(
        np.array([32767, -32768, 0], dtype=np.int16))


def test_silence_code_is_zero() -> None:
    assert g711.decode(bytes([g711.ULAW_SILENCE]) * 4).tolist() == [0, 0, 0, 0]


def test_tables_equal_the_removed_audioop_module_while_it_exists() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")  # gone in Python 3.13
    every_sample = np.arange(-32768, 32768, dtype=np.int16)
    assert audioop.lin2ulaw(every_sample.astype("<i2").tobytes(), 2) == g711.encode(
        every_sample)
    assert audioop.ulaw2lin(bytes(range(256)), 2) == g711.DECODE.astype("<i2").tobytes()
