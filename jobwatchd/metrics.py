"""Prometheus metrics (``GET /metrics``), on a registry of the daemon's own.

Counters and histograms are updated where things happen (tracker, delivery);
state that lives elsewhere (jobs by status, sink positions, pauses) is read by
a collector at scrape time, so there is nothing to keep in sync.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from jobwatchd.models import OWN_STATUSES, TERMINAL_STATUSES, UPSTREAM_STATUSES

POLL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OWN_CODE_PREFIX: Final = "jobwatchd."
"""jobwatchd's own error codes (a fixed few) are always labelled as themselves."""
OTHER: Final = "other"
"""The label value standing for every status or code outside the known ones."""
KNOWN_STATUSES: Final = UPSTREAM_STATUSES | TERMINAL_STATUSES | OWN_STATUSES
MAX_CODE_LABELS: Final = 64
"""Distinct error codes a process labels upstream errors with; later ones count as "other"."""
_CODE_SHAPE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}(\.[A-Za-z0-9_]{1,32}){0,2}")


def status_label(status: str) -> str:
    """A status as a metric label: the statuses jobwatchd knows, else "other" (upstream
    may invent any number of them)."""
    return status if status in KNOWN_STATUSES else OTHER


class CodeLabels:
    """Error codes as metric labels, at most ``limit`` distinct ones besides
    jobwatchd's own: a code that does not look like a vendor code (``Ecs.0114``)
    or comes after the budget is spent counts as "other"."""

    def __init__(self, limit: int = MAX_CODE_LABELS) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, code: str | None) -> str:
        """The label for ``code`` ("" for none)."""
        if not code:
            return ""
        if code in self._seen or code.startswith(OWN_CODE_PREFIX):
            return code
        if len(self._seen) >= self.limit or _CODE_SHAPE.fullmatch(code) is None:
            return OTHER
        self._seen.add(code)
        return code


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkStats:
    """One sink's delivery state at scrape time."""

    name: str
    delivered: int
    failures: int
    position: int
    backlog: int
    lag_seconds: float
    dead_lettered: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """State read at scrape time."""

    jobs_by_status: Mapping[str, int]
    sinks: Iterable[SinkStats]
    paused_seconds: Mapping[str, float]
    polls_in_flight: int
    streams: Mapping[str, int] | None = None
    overdue: Mapping[str, int] | None = None
    """Active jobs past their type's learned p95, per account (every account listed)."""
    begun: Mapping[str, int] | None = None
    """Active jobs with a begin time and a job type, per account (every account listed)."""


class _StateCollector(Collector):
    def __init__(self, read: Callable[[], Snapshot]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        state = self._read()
        jobs = GaugeMetricFamily("jobwatchd_jobs", "Tracked jobs by status.", labels=["status"])
        by_label: dict[str, int] = {}
        for status, count in state.jobs_by_status.items():
            label = status_label(status)
            by_label[label] = by_label.get(label, 0) + count
        for status, count in sorted(by_label.items()):
            jobs.add_metric([status], count)
        yield jobs
        in_flight = GaugeMetricFamily("jobwatchd_polls_in_flight", "Polls running now.")
        in_flight.add_metric([], state.polls_in_flight)
        yield in_flight
        yield _per_account(
            "jobwatchd_account_paused_seconds",
            "Seconds left of an account's throttling pause.",
            state.paused_seconds,
        )
        if state.overdue is not None:
            yield _per_account(
                "jobwatchd_jobs_overdue",
                "Active jobs running longer than the learned p95 duration of their job type.",
                state.overdue,
            )
        if state.begun is not None:
            yield _per_account(
                "jobwatchd_jobs_begun",
                "Active jobs that have begun (upstream gave a begin time and a job type).",
                state.begun,
            )
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "delivered": CounterMetricFamily(
                "jobwatchd_sink_deliveries", "Events acknowledged by a sink.", labels=["sink"]
            ),
            "failures": CounterMetricFamily(
                "jobwatchd_sink_failures",
                "Failed delivery attempts (each is retried).",
                labels=["sink"],
            ),
            "dead_lettered": CounterMetricFamily(
                "jobwatchd_sink_dead_letters",
                "Events moved to a dead-letter file.",
                labels=["sink"],
            ),
            "position": GaugeMetricFamily(
                "jobwatchd_sink_position",
                "Last event sequence a sink acknowledged.",
                labels=["sink"],
            ),
            "backlog": GaugeMetricFamily(
                "jobwatchd_sink_backlog_events",
                "Recorded events not yet acknowledged.",
                labels=["sink"],
            ),
            "lag_seconds": GaugeMetricFamily(
                "jobwatchd_sink_lag_seconds",
                "Age of the oldest event a sink has not acknowledged.",
                labels=["sink"],
            ),
        }
        for sink in state.sinks:
            for attribute, family in families.items():
                family.add_metric([sink.name], getattr(sink, attribute))
        yield from families.values()
        if state.streams is not None:
            yield from _stream_families(state.streams)


def _per_account(name: str, text: str, values: Mapping[str, float]) -> GaugeMetricFamily:
    """A gauge with one sample per account, in account order."""
    gauge = GaugeMetricFamily(name, text, labels=["account"])
    for account, value in sorted(values.items()):
        gauge.add_metric([account], value)
    return gauge


def _stream_families(stats: Mapping[str, int]) -> Iterable[Metric]:
    """The event streams' counters (``GET /v1/events``)."""
    opened = GaugeMetricFamily("jobwatchd_event_streams_open", "Event streams open now.")
    opened.add_metric([], stats["open"])
    yield opened
    for key, name, text in (
        ("served", "jobwatchd_event_streams", "Event streams opened."),
        ("events_sent", "jobwatchd_event_stream_events", "Events sent on event streams."),
        (
            "closed_slow",
            "jobwatchd_event_streams_closed_slow",
            "Event streams closed because the client did not keep up.",
        ),
    ):
        counter = CounterMetricFamily(name, text)
        counter.add_metric([], stats[key])
        yield counter


class Metrics:
    """Every metric jobwatchd exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.code_label = CodeLabels()
        self.polls = Counter(
            "jobwatchd_polls",
            "Polls by account and outcome.",
            ["account", "outcome"],
            registry=registry,
        )
        self.poll_duration = Histogram(
            "jobwatchd_poll_duration_seconds",
            "Upstream poll latency.",
            ["account"],
            buckets=POLL_BUCKETS,
            registry=registry,
        )
        self.transitions = Counter(
            "jobwatchd_transitions",
            "Recorded transitions by event type and new status.",
            ["type", "to"],
            registry=registry,
        )
        self.upstream_errors = Counter(
            "jobwatchd_upstream_errors",
            "Upstream errors by account, HTTP status (0: no answer) and vendor code.",
            ["account", "http_status", "code"],
            registry=registry,
        )
        self.rate_limit_pauses = Counter(
            "jobwatchd_rate_limit_pauses",
            "Throttling pauses of an account.",
            ["account"],
            registry=registry,
        )
        self.registrations = Counter(
            "jobwatchd_registrations", "Jobs newly registered.", registry=registry
        )
        self.event_loop_lag = Gauge(
            "jobwatchd_event_loop_lag_seconds",
            "How late the event loop ran a timer, last measured.",
            registry=registry,
        )
        self.store_write_failures = Counter(
            "jobwatchd_store_write_failures",
            "Poll outcomes the store failed to record (retried on the next poll).",
            registry=registry,
        )
        self.reloads = Counter(
            "jobwatchd_config_reloads", "SIGHUP reloads by result.", ["result"], registry=registry
        )

    def watch(self, read: Callable[[], Snapshot]) -> None:
        """Export the state returned by ``read`` at every scrape."""
        self.registry.register(_StateCollector(read))

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
