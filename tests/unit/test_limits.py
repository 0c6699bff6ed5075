"""Lockout after failures and the per-key sliding-window rate limit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callsec_ari.verification.limits import LockoutPolicy, RateLimiter

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
    assert POLICY.remaining_attempts([0.0, 10.0], 20.0) == 1
    assert POLICY.locked_until([0.0, 10.0, 20.0], 20.0) == 920.0
    assert POLICY.remaining_attempts([0.0, 10.0, 20.0], 20.0) == 0


def test_lock_ends_after_the_lockout() -> None:
    assert POLICY.is_locked([0.0, 10.0, 20.0], 919.9)
    assert not POLICY.is_locked([0.0, 10.0, 20.0], 920.0)


def test_failures_further_apart_than_the_window_do_not_lock() -> None:
    assert not POLICY.is_locked([0.0, 1800.0, 3600.0], 3600.0)
    assert POLICY.is_locked([1.0, 1800.0, 3600.0], 3600.0)


def test_one_more_failure_inside_the_window_after_a_lock_locks_again() -> None:
    failures = [0.0, 10.0, 20.0]
    assert POLICY.remaining_attempts(failures, 1000.0) == 1
    assert POLICY.locked_until([*failures, 1000.0], 1000.0) == 1900.0


def test_failures_after_now_are_ignored() -> None:
    assert not POLICY.is_locked([0.0, 10.0, 500.0], 20.0)


def test_a_fresh_caller_has_all_attempts() -> None:
    assert POLICY.remaining_attempts([], 0.0) == 3


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
    assert POLICY.remaining_attempts(recent, now) == POLICY.remaining_attempts(failures, now)


@given(times, st.integers(0, 25_000).map(float))
def test_remaining_attempts_is_how_many_failures_now_lock(failures: list[float],
                                                          now: float) -> None:
    remaining = POLICY.remaining_attempts(failures, now)
    if remaining == 0:
        assert POLICY.is_locked(failures, now)
    else:
        assert not POLICY.is_locked([*failures] + [now] * (remaining - 1), now)
        assert POLICY.is_locked([*failures] + [now] * remaining, now)


# --- rate limiter ---------------------------------------------------------------------------

def test_rate_limiter_allows_the_limit_then_refuses_until_the_window_moves() -> None:
    limiter = RateLimiter(limit=2, window=60)
    assert limiter.allow("k", 0.0) and limiter.allow("k", 10.0)
    assert not limiter.allow("k", 59.0)
    assert limiter.retry_after("k", 59.0) == 1.0
    assert limiter.allow("k", 60.0)
    assert not limiter.allow("k", 69.0)
    assert limiter.allow("k", 70.0)


def test_rate_limits_are_per_key() -> None:
    limiter = RateLimiter(limit=1, window=60)
    assert limiter.allow("a", 0.0) and limiter.allow("b", 0.0)
    assert not limiter.allow("a", 1.0)
    limiter.reset("a")
    assert limiter.allow("a", 1.0)


def test_rate_limiter_holds_a_bounded_number_of_keys_and_evicts_the_least_recent() -> None:
    limiter = RateLimiter(limit=1, window=60, max_keys=3)
    for key in ("a", "b", "c"):
        limiter.allow(key, 0.0)
    limiter.allow("a", 1.0)  # refused, but "a" is now the most recent
    limiter.allow("d", 2.0)
    assert len(limiter) == 3
    assert "b" not in limiter and "a" in limiter and "d" in limiter
    assert not limiter.allow("a", 3.0)


def test_unknown_key_can_go_now() -> None:
    assert RateLimiter(limit=1, window=60).retry_after("x", 0.0) == 0.0


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 50)), max_size=60),
       st.integers(1, 4), st.integers(1, 20))
def test_no_key_is_ever_allowed_more_than_limit_events_in_any_window(
        events: list[tuple[str, int]], limit: int, window: int) -> None:
    limiter = RateLimiter(limit=limit, window=window)
    allowed: dict[str, list[float]] = {}
    ordered = sorted(events, key=lambda event: event[1])
    for key, at in ordered:
        expected_wait = limiter.retry_after(key, float(at))
        ok = limiter.allow(key, float(at))
        assert ok == (expected_wait == 0.0)
        if ok:
            allowed.setdefault(key, []).append(float(at))
    for stamps in allowed.values():
        for start in stamps:
            assert sum(1 for t in stamps if start <= t < start + window) <= limit
