"""Poll interval computation: exponential backoff with jitter. Pure, no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class BackoffPolicy:
    """Intervals grow from ``min_interval`` by ``multiplier`` up to ``max_interval``.

    ``jitter`` spreads each interval by up to that fraction either way, so jobs
    registered together do not poll in lockstep; the result never leaves
    ``[min_interval, max_interval]``.
    """

    min_interval: float
    max_interval: float
    multiplier: float
    jitter: float

    def base(self, attempt: int) -> float:
        """The interval before jitter after ``attempt`` polls without change."""
        if attempt <= 0 or self.multiplier <= 1.0 or self.min_interval <= 0:
            return min(self.min_interval, self.max_interval)
        # Compare in log space so huge attempt counts cannot overflow.
        if attempt * math.log(self.multiplier) >= math.log(self.max_interval / self.min_interval):
            return self.max_interval
        return min(self.max_interval, self.min_interval * self.multiplier**attempt)

    def interval(self, attempt: int, rand: float) -> float:
        """The jittered interval; ``rand`` is a uniform draw from [0, 1)."""
        spread = 1.0 + self.jitter * (2.0 * rand - 1.0)
        return min(self.max_interval, max(self.min_interval, self.base(attempt) * spread))
