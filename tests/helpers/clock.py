"""A settable clock for the simulator: tests move time instead of sleeping."""

from __future__ import annotations


class FakeClock:
    """A settable clock; tests move time instead of sleeping."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
