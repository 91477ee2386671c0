"""Overdue jobs: active jobs running longer than the learned p95 duration of
their job type (``jobwatchd_jobs_overdue{account}``). Pure, no I/O.

A scrape must not walk every active job (there may be a million), so the
tracker keeps an :class:`OverdueIndex` up to date as jobs begin and leave: per
job type and account, how many began in each whole second, with those seconds
in order. A scrape then looks only at the job types with a ready model and,
in each, only at the seconds old enough to be overdue: its work grows with
the number of overdue begin-seconds, never with the number of jobs.

Begin times count to the whole second (the second they fall in), so a job is
counted as overdue at most one second early; the alert that reads the gauge
waits many minutes anyway.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from jobwatchd.learning import DurationModel

OVERDUE_QUANTILE: Final = 0.95


def overdue_after(model: DurationModel | None) -> float | None:
    """Seconds after which a job of the model's type is overdue: the p95 of all
    its jobs (body and tail); None without a model ready to trust."""
    if model is None or not model.ready:
        return None
    return model.overall_quantile(OVERDUE_QUANTILE)


def begin_second(began_at: float) -> int:
    """The whole second a begin time falls in (what the index keeps)."""
    return math.floor(began_at)


def is_overdue(began_at: float | None, limit: float | None, now: float) -> bool:
    """Whether a job that began at ``began_at`` is overdue at ``now`` when its
    type's jobs take up to ``limit`` seconds (:func:`overdue_after`)."""
    if began_at is None or limit is None:
        return False
    return now - begin_second(began_at) > limit


@dataclass(slots=True)
class _Seconds:
    """How many of one (job type, account)'s active jobs began in each second."""

    counts: dict[int, int] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)  # the keys of counts, ascending

    def add(self, second: int) -> None:
        count = self.counts.get(second)
        if count is not None:
            self.counts[second] = count + 1
            return
        self.counts[second] = 1
        order = self.order
        if not order or order[-1] < second:  # the usual case: the job began just now
            order.append(second)
        else:
            bisect.insort(order, second)

    def remove(self, second: int) -> None:
        count = self.counts.get(second, 0)
        if count > 1:
            self.counts[second] = count - 1
        elif count == 1:
            del self.counts[second]
            del self.order[bisect.bisect_left(self.order, second)]

    def began_before(self, second: float) -> int:
        """Jobs that began in a second earlier than ``second``."""
        total = 0
        counts = self.counts
        for key in self.order:
            if key >= second:
                break
            total += counts[key]
        return total


class OverdueIndex:
    """Active jobs with a job type and a begin time, by type, account and
    begin-second; counts the overdue ones per account."""

    def __init__(self) -> None:
        self._by_type: dict[str, dict[str, _Seconds]] = {}
        self._limits: dict[str, tuple[tuple[float, ...], float | None]] = {}
        self.by_account: dict[str, int] = {}
        """Indexed jobs per account: the active jobs that have begun and have a type."""
        self.size = 0

    def add(self, job_type: str | None, account: str, began_at: float | None) -> None:
        """Index a job (nothing without both a type and a begin time). Called for
        every job the restore loads: kept to a few dict operations."""
        if job_type is None or began_at is None:
            return
        accounts = self._by_type.get(job_type)
        if accounts is None:
            accounts = self._by_type[job_type] = {}
        seconds = accounts.get(account)
        if seconds is None:
            seconds = accounts[account] = _Seconds()
        second = math.floor(began_at)
        counts = seconds.counts
        count = counts.get(second)
        if count is None:
            seconds.add(second)
        else:
            counts[second] = count + 1
        by_account = self.by_account
        by_account[account] = by_account.get(account, 0) + 1
        self.size += 1

    def remove(self, job_type: str | None, account: str, began_at: float | None) -> None:
        """Forget a job indexed with these values (nothing if it was not)."""
        if job_type is None or began_at is None:
            return
        accounts = self._by_type.get(job_type)
        seconds = accounts.get(account) if accounts is not None else None
        if accounts is None or seconds is None:
            return
        second = begin_second(began_at)
        if second not in seconds.counts:
            return
        seconds.remove(second)
        self.size -= 1
        left = self.by_account[account] - 1
        if left:
            self.by_account[account] = left
        else:
            del self.by_account[account]
        if not seconds.counts:
            del accounts[account]
            if not accounts:
                del self._by_type[job_type]

    def overdue(self, models: Mapping[str, DurationModel], now: float) -> dict[str, int]:
        """Overdue jobs per account (accounts without any are left out)."""
        found: dict[str, int] = {}
        by_type = self._by_type
        for job_type, model in models.items():
            accounts = by_type.get(job_type)
            if accounts is None:
                continue
            limit = self._limit(job_type, model)
            if limit is None:
                continue
            # is_overdue: now - second > limit, i.e. second < now - limit
            oldest_on_time = now - limit
            for account, seconds in accounts.items():
                count = seconds.began_before(oldest_on_time)
                if count:
                    found[account] = found.get(account, 0) + count
        return found

    def _limit(self, job_type: str, model: DurationModel) -> float | None:
        """:func:`overdue_after`, computed again only when the model has learned."""
        state = (
            model.count,
            model.mean,
            model.m2,
            model.tail_count,
            model.tail_mean,
            model.tail_m2,
        )
        cached = self._limits.get(job_type)
        if cached is not None and cached[0] == state:
            return cached[1]
        limit = overdue_after(model)
        self._limits[job_type] = (state, limit)
        return limit
