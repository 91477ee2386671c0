"""Learned poll schedules: each job type's duration distribution, estimated
online from finished jobs, decides when a poll is worth spending. Pure, no I/O.

The model is a log-normal body with a separate slow tail. Job durations are
positive and right-skewed, and real clouds add a few jobs that take several
times longer than usual; fitted by one log-normal, those few widen the whole
fit. So a job that finishes more than ``TAIL_Z`` standard deviations (of
``ln(duration)``) above the body's mean teaches the tail (its own running
log-normal and its share of the jobs) instead of the body; this starts once
the body has ``TAIL_AFTER`` jobs, as a sigma from a handful of jobs would call
ordinary jobs slow. Older jobs weigh less once ``MAX_WEIGHT`` jobs have been
seen, so the model follows drift; should the tail's share grow past
``TAIL_SHARE_MAX`` (the durations moved, this is no tail), body and tail are
merged and the split starts over.

The schedule aims at "fewest polls such that nearly every job is detected
within ``target_lag``". A poll at time ``t`` is spent only on the jobs still
running at ``t``: polls early in a job's life, when every job is still
running, are the dear ones, and polls late in it, when few are left, are
cheap. So the optimum (the benchmark computes it exactly, as its oracle) is
one window polled every ``target_lag`` that gives up the jobs finishing
unusually *early* and covers the slow tail. Here the window opens
``target_lag`` after the body's ``early_mass`` quantile (a job ending in
between is still seen within ``target_lag``, by the opening poll) and closes
at the ``1 - late_mass`` quantile of body and tail together; past it the rare
straggler gets plain backoff. Inside the window the spacing is exactly
``target_lag``, so a job ending there is seen within it; jitter moves the
window's first poll earlier, which spreads jobs that began together without
lengthening any gap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

from jobwatchd.backoff import BackoffPolicy

MIN_SAMPLES = 5
MAX_WEIGHT = 500.0
MIN_SIGMA = 0.05
SHORTEST = 0.001  # seconds; durations below this are clock noise
TAIL_Z = 2.5  # above the body's mean by this many sigmas: a tail job
TAIL_AFTER = 20  # body samples before any job is called a tail job
TAIL_SHARE_MAX = 0.3  # a "tail" this common is drift: start the split over
_STANDARD = NormalDist()
MAX_MODELS = 256
"""Job types learned at most: the type is upstream's word, so a hostile or broken
upstream could otherwise grow the models (memory, the store) without end."""
MAX_TYPE_LENGTH = 64


def learnable_type(job_type: str, known: Mapping[str, object], limit: int = MAX_MODELS) -> bool:
    """Whether a finished job of ``job_type`` may teach a model: one already learned,
    or a new 1-64 character printable ASCII name while fewer than ``limit`` are."""
    if job_type in known:
        return True
    return (
        len(known) < limit
        and 0 < len(job_type) <= MAX_TYPE_LENGTH
        and job_type.isascii()
        and job_type.isprintable()
    )


def _welford(count: float, mean: float, m2: float, value: float) -> tuple[float, float, float]:
    """Add one sample of weight 1 to running (weight, mean, sum of squares)."""
    count += 1.0
    delta = value - mean
    mean += delta / count
    return count, mean, m2 + delta * (value - mean)


@dataclass(slots=True)
class DurationModel:
    """Online estimate of one job type's duration: a log-normal body and a tail."""

    count: float = 0.0
    mean: float = 0.0
    m2: float = 0.0
    tail_count: float = 0.0
    tail_mean: float = 0.0
    tail_m2: float = 0.0
    _windows: dict[tuple[float, float, float], tuple[float, float]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def observe(self, seconds: float) -> None:
        """Learn from one finished job (exponentially forgetting past MAX_WEIGHT)."""
        value = math.log(max(seconds, SHORTEST))
        self._windows.clear()
        total = self.count + self.tail_count
        if total >= MAX_WEIGHT:  # make room for one more: older jobs weigh less
            keep = (MAX_WEIGHT - 1.0) / total
            self.count *= keep
            self.m2 *= keep
            self.tail_count *= keep
            self.tail_m2 *= keep
        if self.count >= TAIL_AFTER and value > self.mean + TAIL_Z * self.sigma:
            self.tail_count, self.tail_mean, self.tail_m2 = _welford(
                self.tail_count, self.tail_mean, self.tail_m2, value
            )
            if self.tail_count > TAIL_SHARE_MAX * (self.count + self.tail_count):
                self._merge_tail()
            return
        self.count, self.mean, self.m2 = _welford(self.count, self.mean, self.m2, value)

    def _merge_tail(self) -> None:
        """Fold the tail into the body (parallel variance combination)."""
        count = self.count + self.tail_count
        delta = self.tail_mean - self.mean
        self.mean += delta * self.tail_count / count
        self.m2 += self.tail_m2 + delta * delta * self.count * self.tail_count / count
        self.count = count
        self.tail_count = self.tail_mean = self.tail_m2 = 0.0

    @property
    def ready(self) -> bool:
        """Enough samples to trust."""
        return self.count >= MIN_SAMPLES

    @property
    def sigma(self) -> float:
        """Standard deviation of the body's ln(duration)."""
        if self.count < 2:
            return 1.0
        return max(MIN_SIGMA, math.sqrt(max(0.0, self.m2 / (self.count - 1))))

    @property
    def tail_share(self) -> float:
        """The fraction of jobs that belong to the slow tail."""
        total = self.count + self.tail_count
        return self.tail_count / total if total > 0 else 0.0

    @property
    def tail_sigma(self) -> float:
        """Standard deviation of the tail's ln(duration) (the body's, until known)."""
        if self.tail_count < 2:
            return self.sigma
        return max(MIN_SIGMA, math.sqrt(max(0.0, self.tail_m2 / (self.tail_count - 1))))

    def quantile(self, p: float) -> float:
        """The duration (seconds) that a fraction ``p`` of the body's jobs finish within."""
        return math.exp(self.mean + self.sigma * _STANDARD.inv_cdf(p))

    def cdf(self, seconds: float) -> float:
        """The fraction of all jobs (body and tail) that finish within ``seconds``."""
        if seconds <= 0:
            return 0.0
        value = math.log(seconds)
        body = _STANDARD.cdf((value - self.mean) / self.sigma)
        share = self.tail_share
        if share <= 0:
            return body
        tail = _STANDARD.cdf((value - self.tail_mean) / self.tail_sigma)
        return (1.0 - share) * body + share * tail

    def overall_quantile(self, p: float) -> float:
        """The duration that a fraction ``p`` of all jobs (body and tail) finish within."""
        if self.tail_share <= 0:
            return self.quantile(p)
        z = _STANDARD.inv_cdf(p)
        low = min(self.mean + self.sigma * z, self.tail_mean + self.tail_sigma * z)
        high = max(self.mean + self.sigma * z, self.tail_mean + self.tail_sigma * z)
        for _ in range(60):  # bisection in ln(seconds): the mixture's quantile lies between
            middle = (low + high) / 2
            if self.cdf(math.exp(middle)) < p:
                low = middle
            else:
                high = middle
        return math.exp(high)

    def window(self, policy: AdaptivePolicy) -> tuple[float, float]:
        """Elapsed seconds between which ``policy`` polls every ``target_lag`` (cached)."""
        key = (policy.target_lag, policy.early_mass, policy.late_mass)
        found = self._windows.get(key)
        if found is None:
            opens = self.quantile(policy.early_mass) + policy.target_lag
            closes = max(opens, self.overall_quantile(1.0 - policy.late_mass))
            found = self._windows[key] = (opens, closes)
        return found

    def to_json(self) -> dict[str, float]:
        """A JSON-ready form for the store."""
        return {
            "count": self.count,
            "mean": self.mean,
            "m2": self.m2,
            "tail_count": self.tail_count,
            "tail_mean": self.tail_mean,
            "tail_m2": self.tail_m2,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DurationModel:
        """Rebuild from :meth:`to_json` output (models stored before the tail: no tail)."""
        return cls(
            count=float(data["count"]),
            mean=float(data["mean"]),
            m2=float(data["m2"]),
            tail_count=float(data.get("tail_count", 0.0)),
            tail_mean=float(data.get("tail_mean", 0.0)),
            tail_m2=float(data.get("tail_m2", 0.0)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AdaptivePolicy:
    """How the learned schedule trades polls for detection lag.

    ``early_mass`` of the body's jobs (those ending more than ``target_lag``
    before the window opens) and ``late_mass`` of all jobs (ending after it
    closes) are left to be seen later than ``target_lag``.
    """

    target_lag: float
    early_mass: float = 0.03
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
    """Seconds until the next poll of a job ``elapsed`` seconds after it began.

    Always within ``[backoff.min_interval, backoff.max_interval]``.
    """
    low, high = backoff.min_interval, backoff.max_interval
    opens, closes = model.window(policy)
    lead = backoff.jitter * policy.target_lag
    if elapsed < opens - lead:
        # Completion is unlikely yet: wake up when the window opens, up to
        # ``lead`` early so that jobs begun together spread out. A job woken
        # early is in the window already (no second wake-up just before it).
        wake = opens - lead * rand
        return min(high, max(low, wake - elapsed))
    if elapsed <= closes:
        return min(high, max(low, policy.target_lag))
    return backoff.interval(attempt, rand)
