"""Reconnect pauses shared by every link callsec keeps open (ARI events websocket, AMI)."""

from __future__ import annotations

import random

#: 2**60 * minimum is beyond any maximum: the exponent stops growing there.
_MAX_EXPONENT = 60


class ReconnectBackoff:
    """Exponential backoff with full jitter, floored at ``minimum``."""

    def __init__(self, minimum: float, maximum: float, rng: random.Random) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self._rng = rng
        self._attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.minimum * 2 ** min(self._attempt, _MAX_EXPONENT))
        self._attempt += 1
        return self._rng.uniform(self.minimum, ceiling)

    def reset(self) -> None:
        self._attempt = 0
