"""A token bucket with an explicit clock. Pure, no I/O."""

from __future__ import annotations


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``.

    The caller passes the time, which keeps the bucket deterministic to test.
    """

    __slots__ = ("_tokens", "_updated", "burst", "rate")

    # Refills are floating-point sums: waiting exactly (1 - tokens) / rate may
    # refill to 0.9999999999999999 of a token, so wait_time rounds up a hair.
    _ROUND_UP = 1 + 1e-9

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._updated = now

    def _refill(self, now: float) -> None:
        if now > self._updated:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now

    def wait_time(self, now: float) -> float:
        """Seconds until a token is available (0 when one is available now)."""
        self._refill(now)
        if self._tokens >= 1:
            return 0.0
        return (1 - self._tokens) / self.rate * self._ROUND_UP

    def try_take(self, now: float) -> bool:
        """Take a token if one is available."""
        self._refill(now)
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def update(self, rate: float, burst: float, now: float) -> None:
        """Change the rate (on reload) keeping the tokens accrued so far."""
        self._refill(now)
        self.rate = rate
        self.burst = burst
        self._tokens = min(self._tokens, burst)
