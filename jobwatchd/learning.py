"""Learned poll schedules: each job type's duration distribution, estimated
online from finished jobs, decides when a poll is worth spending. Pure, no I/O.

The model is log-normal (job durations are positive and right-skewed): the
running mean and variance of ``ln(duration)``, with older jobs weighing less
once ``MAX_WEIGHT`` jobs have been seen so the model follows drift.

The schedule is the optimal shape for "fewest polls such that nearly every
job is detected within ``target_lag``": a Lagrangian argument gives a
bang-bang rule, dense polls (every ``target_lag``) where completion is likely
and sparse ones elsewhere. Concretely: sleep until the ``early_mass``
quantile, poll every ``target_lag`` until the ``1 - late_mass`` quantile,
then fall back to plain backoff for the rare straggler.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from jobwatchd.backoff import BackoffPolicy

MIN_SAMPLES = 5
MAX_WEIGHT = 500.0
MIN_SIGMA = 0.05
SHORTEST = 0.001  # seconds; durations below this are clock noise


@dataclass(slots=True)
class DurationModel:
    """Online log-normal estimate of one job type's duration."""

    count: float = 0.0
    mean: float = 0.0
    m2: float = 0.0

    def observe(self, seconds: float) -> None:
        """Learn from one finished job (exponentially forgetting past MAX_WEIGHT)."""
        value = math.log(max(seconds, SHORTEST))
        saturated = self.count >= MAX_WEIGHT
        self.count = min(self.count + 1.0, MAX_WEIGHT)
        delta = value - self.mean
        self.mean += delta / self.count  # Welford; a moving average once saturated
        if saturated:
            self.m2 *= 1 - 1 / self.count
        self.m2 += delta * (value - self.mean)

    @property
    def ready(self) -> bool:
        """Enough samples to trust."""
        return self.count >= MIN_SAMPLES

    @property
    def sigma(self) -> float:
        """Standard deviation of ln(duration)."""
        if self.count < 2:
            return 1.0
        return max(MIN_SIGMA, math.sqrt(max(0.0, self.m2 / (self.count - 1))))

    def quantile(self, p: float) -> float:
        """The duration (seconds) that a fraction ``p`` of jobs finish within."""
        return math.exp(NormalDist(self.mean, self.sigma).inv_cdf(p))

    def to_json(self) -> dict[str, float]:
        """A JSON-ready form for the store."""
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DurationModel:
        """Rebuild from :meth:`to_json` output."""
        return cls(count=float(data["count"]), mean=float(data["mean"]), m2=float(data["m2"]))


@dataclass(frozen=True, slots=True, kw_only=True)
class AdaptivePolicy:
    """How the learned schedule trades polls for detection lag."""

    target_lag: float
    early_mass: float = 0.04
    late_mass: float = 0.01


def adaptive_delay(
    model: DurationModel,
    elapsed: float,
    policy: AdaptivePolicy,
    backoff: BackoffPolicy,
    *,
    attempt: int,
    rand: float,
) -> float:
    """Seconds until the next poll of a running job ``elapsed`` seconds into its life.

    Always within ``[backoff.min_interval, backoff.max_interval]``.
    """
    low, high = backoff.min_interval, backoff.max_interval
    start = model.quantile(policy.early_mass)
    if elapsed < start:
        # Completion is unlikely yet: wake up exactly when it becomes likely.
        return min(high, max(low, start - elapsed))
    if elapsed <= model.quantile(1 - policy.late_mass):
        # Jitter only shortens, so the lag stays within the target; a quarter of
        # it is enough to keep jobs apart without spending polls on it.
        spacing = policy.target_lag * (1 - backoff.jitter * rand / 4)
        return min(high, max(low, spacing))
    return backoff.interval(attempt, rand)
