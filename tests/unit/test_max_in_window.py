"""max_in_window: the peak count of arrival times in any one window (pure)."""

from __future__ import annotations

import pytest

from jobwatchd.cloud.simulator import max_in_window


@pytest.mark.parametrize(
    ("times", "window", "expected"),
    [
        ([], 1.0, 0),
        ([5.0], 1.0, 1),
        ([0.0, 0.5, 0.99], 1.0, 3),
        # Half-open [t, t + 1): a query exactly one second later is the next window.
        ([0.0, 1.0], 1.0, 1),
        ([0.0, 0.2, 1.1, 1.15, 1.19], 1.0, 4),
        ([3.0, 0.1, 2.9, 0.0, 3.05], 1.0, 3),  # any order
        ([0.0, 0.4, 0.8, 1.2, 1.6], 0.5, 2),
        ([1.0] * 7, 1.0, 7),
    ],
)
def test_max_in_window(times: list[float], window: float, expected: int) -> None:
    assert max_in_window(times, window) == expected


def test_max_in_window_takes_any_iterable() -> None:
    assert max_in_window(iter([0.0, 0.1, 5.0])) == 2
