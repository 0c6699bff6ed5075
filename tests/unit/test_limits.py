"""Lockout after failures and the per-key sliding-window rate limit."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callsec_ari.config_check import load_settings
from callsec_ari.core.errors import ConfigError
from callsec_ari.store.abuse import sliding_count
from callsec_ari.verification.limits import (
    WITHHELD,
    LockoutPolicy,
    caller_subject,
    customer_subject,
)

REPO = Path(__file__).resolve().parents[2]
POLICY = LockoutPolicy(failures=3, window=3600, lockout=900)
times = st.lists(st.integers(0, 20_000).map(float), max_size=12)


def reference_locked_until(policy: LockoutPolicy, failures: list[float],
                           now: float) -> float | None:
    """Brute force: every failure that closes a group of `failures` within `window` locks."""
    past = [t for t in failures if t <= now]
    ends = [t + policy.lockout for t in past
            if sum(1 for u in past if t - policy.window < u <= t) >= policy.failures]
    running = [end for end in ends if end > now]
    return max(running) if running else None


def test_two_failures_do_not_lock_and_the_third_does() -> None:
    assert not POLICY.is_locked([0.0, 10.0], 20.0)
    assert POLICY.locked_until([0.0, 10.0, 20.0], 20.0) == 920.0


def test_lock_ends_after_the_lockout() -> None:
    assert POLICY.is_locked([0.0, 10.0, 20.0], 919.9)
    assert not POLICY.is_locked([0.0, 10.0, 20.0], 920.0)


def test_failures_further_apart_than_the_window_do_not_lock() -> None:
    assert not POLICY.is_locked([0.0, 1800.0, 3600.0], 3600.0)
    assert POLICY.is_locked([1.0, 1800.0, 3600.0], 3600.0)


def test_one_more_failure_inside_the_window_after_a_lock_locks_again() -> None:
    failures = [0.0, 10.0, 20.0]
    assert not POLICY.is_locked(failures, 1000.0)
    assert POLICY.locked_until([*failures, 1000.0], 1000.0) == 1900.0


def test_failures_after_now_are_ignored() -> None:
    assert not POLICY.is_locked([0.0, 10.0, 500.0], 20.0)


@pytest.mark.parametrize("kwargs", [{"failures": 0}, {"window": 0}, {"lockout": -1}])
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LockoutPolicy(**kwargs)  # type: ignore[arg-type]


@given(times, st.integers(0, 25_000).map(float), st.integers(1, 4),
       st.sampled_from([60.0, 600.0, 3600.0]), st.sampled_from([30.0, 900.0]))
def test_lockout_matches_a_brute_force_reference(failures: list[float], now: float, count: int,
                                                 window: float, lockout: float) -> None:
    policy = LockoutPolicy(failures=count, window=window, lockout=lockout)
    assert policy.locked_until(failures, now) == reference_locked_until(policy, failures, now)
    assert policy.locked_until(list(reversed(failures)), now) == policy.locked_until(failures, now)


@given(times, st.integers(0, 25_000).map(float))
def test_only_failures_within_the_horizon_matter(failures: list[float], now: float) -> None:
    recent = [t for t in failures if now - t < POLICY.horizon]
    assert POLICY.locked_until(recent, now) == POLICY.locked_until(failures, now)


# --- rate limits (fixed windows judged as a sliding one; the counts live in the database) ---

def _simulate(events: list[int], limit: int, window: int) -> list[int]:
    """What :class:`~callsec_ari.store.abuse.DbAbuseStore` decides for one bucket: every event
    is counted in its fixed window (refused ones too); the times of the allowed ones."""
    counts: dict[int, int] = {}
    allowed = []
    for at in sorted(events):
        start = at // window * window
        counts[start] = counts.get(start, 0) + 1
        if sliding_count(counts.get(start - window, 0), counts[start], at - start,
                         window) <= limit:
            allowed.append(at)
    return allowed


@given(st.integers(0, 1000), st.integers(0, 1000), st.floats(0, 10_000), st.floats(1, 5000))
def test_sliding_count_lies_between_the_current_window_and_both(
        previous: int, current: int, elapsed: float, window: float) -> None:
    counted = sliding_count(previous, current, elapsed, window)
    assert current <= counted <= previous + current
    assert sliding_count(previous, current, elapsed + 1, window) <= counted
    if elapsed >= window:
        assert counted == current


@given(st.lists(st.integers(0, 500), max_size=80), st.integers(1, 5), st.integers(1, 60))
def test_a_bucket_never_allows_more_than_its_limit_per_window_nor_twice_in_any_span(
        events: list[int], limit: int, window: int) -> None:
    allowed = _simulate(events, limit, window)
    for start in allowed:
        assert sum(1 for t in allowed if start <= t < start + window) <= 2 * limit
        fixed = start // window * window
        assert sum(1 for t in allowed if fixed <= t < fixed + window) <= limit


@given(st.lists(st.integers(0, 100), max_size=40), st.integers(1, 5), st.integers(1, 20))
def test_after_two_quiet_windows_the_next_event_is_allowed(
        events: list[int], limit: int, window: int) -> None:
    later = max(events, default=0) + 2 * window
    later = later // window * window  # at the start of a fixed window
    assert _simulate([*events, later], limit, window)[-1:] == [later]


@pytest.mark.parametrize("number", ["", "anonymous", "Anonymous", "restricted", "+", "12"])
def test_withheld_callers_share_one_bucket_and_are_not_exempt(number: str) -> None:
    assert caller_subject(number) == WITHHELD


def test_one_number_is_one_subject_however_it_is_written() -> None:
    assert caller_subject("+49 151 1234567") == caller_subject("+491511234567") != WITHHELD
    assert customer_subject("c-1") != customer_subject("c-2")


@pytest.mark.parametrize(("key", "value"), [("LOCKOUT_WRONG_CODES", "0"),
                                            ("CUSTOMER_CODE_SENDS_PER_HOUR", "-1"),
                                            ("CALLER_CODE_CHECKS_PER_HOUR", "-5")])
def test_out_of_range_limits_are_refused_naming_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key.lower()):
        load_settings(REPO / "config" / "callsec.conf.sample",
                      env={f"CALLSEC_VERIFICATION__{key}": value})
