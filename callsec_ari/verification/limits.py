"""Lockout after repeated failures and a per-key sliding-window rate limit (pure; times are
passed in as seconds, e.g. ``time.time()``).

:class:`LockoutPolicy` is a function of the failure times alone, so the store keeps failed
attempts and asks it; nothing else needs saving. :class:`RateLimiter` is in-memory per process
(callers' numbers arrive as keyed hashes, never in plaintext).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """``failures`` failures less than ``window`` seconds apart (first to last) lock for
    ``lockout`` seconds from the last of them.

    The window slides: once a lock has run out, failures still inside the window count, so one
    more failure right after a lock locks again until the window has moved past them.
    """

    failures: int = 3
    window: float = 3600.0
    lockout: float = 900.0

    def __post_init__(self) -> None:
        if self.failures < 1 or self.window <= 0 or self.lockout <= 0:
            raise ValueError("failures, window and lockout must be positive")

    @property
    def horizon(self) -> float:
        """Only failures in ``(now - horizon, now]`` can matter: a store may query just those."""
        return self.window + self.lockout

    def locked_until(self, failure_times: Iterable[float], now: float) -> float | None:
        """When the lock running at ``now`` ends, or None. Failures after ``now`` are ignored."""
        times = sorted(t for t in failure_times if t <= now)
        span = self.failures - 1
        for index in range(len(times) - 1, span - 1, -1):
            if times[index] - times[index - span] < self.window:
                until = times[index] + self.lockout
                return until if until > now else None
        return None

    def is_locked(self, failure_times: Iterable[float], now: float) -> bool:
        return self.locked_until(failure_times, now) is not None

    def remaining_attempts(self, failure_times: Iterable[float], now: float) -> int:
        """How many failures at ``now`` it takes to lock (0 while locked)."""
        times = [t for t in failure_times if t <= now]
        if self.is_locked(times, now):
            return 0
        recent = sum(1 for t in times if now - t < self.window)
        return max(self.failures - recent, 1)


class RateLimiter:
    """At most ``limit`` allowed events per key in any ``window`` seconds (sliding log).

    Holds at most ``max_keys`` keys; when full, the key used least recently is forgotten (so a
    flood of distinct keys can reset an idle key's count: size ``max_keys`` above the number of
    distinct callers expected per ``window``).
    """

    def __init__(self, limit: int, window: float, *, max_keys: int = 10_000) -> None:
        if limit < 1 or window <= 0 or max_keys < 1:
            raise ValueError("limit, window and max_keys must be positive")
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, key: str, now: float) -> bool:
        """Record and allow an event for ``key`` at ``now``, or refuse it (not recorded)."""
        events = self._touch(key, now)
        if len(events) >= self.limit:
            return False
        events.append(now)
        return True

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until ``allow(key, ...)`` would succeed (0.0 if it would now)."""
        events = self._events.get(key)
        if events is None:
            return 0.0
        live = [t for t in events if now - t < self.window]
        if len(live) < self.limit:
            return 0.0
        return live[-self.limit] + self.window - now

    def reset(self, key: str) -> None:
        self._events.pop(key, None)

    def __len__(self) -> int:
        return len(self._events)

    def __contains__(self, key: object) -> bool:
        return key in self._events

    def _touch(self, key: str, now: float) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            while len(self._events) >= self.max_keys:
                self._events.popitem(last=False)
            events = self._events[key] = deque()
        else:
            self._events.move_to_end(key)
        while events and now - events[0] >= self.window:
            events.popleft()
        return events
