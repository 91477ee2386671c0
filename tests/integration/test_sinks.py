"""Sinks and delivery: filters, the built-in sinks, plugins, and positions that
advance only on acknowledgement."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from jobwatchd.backoff import BackoffPolicy
from jobwatchd.config import ConfigError, SinkConfig, SinkFilter
from jobwatchd.engine.delivery import SinkRunner
from jobwatchd.models import JOB_TRANSITION, SUBJOB_TRANSITION, NewEvent, NewJob, StoredEvent
from jobwatchd.sinks import Delivery, SinkContext, create_sink, decode, matches, sink_class
from jobwatchd.sinks.file import FileOptions, FileSink
from jobwatchd.sinks.log import LogSink
from jobwatchd.store.sqlite import SQLiteStore
from tests.helpers.plugins import sink_plugin
from tests.helpers.waiting import async_wait_until

FAST_RETRY = BackoffPolicy(min_interval=0.01, max_interval=0.05, multiplier=2.0, jitter=0.0)


def cloud_event(
    n: int,
    *,
    job: str = "job1",
    kind: str = JOB_TRANSITION,
    to: str = "RUNNING",
    terminal: bool = False,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"id-{job}-{n}",
        "type": kind,
        "subject": job,
        "data": {"job_id": job, "to": to, "terminal": terminal, "labels": labels or {}},
    }


def stored(n: int, **kwargs: Any) -> StoredEvent:
    event = cloud_event(n, **kwargs)
    return StoredEvent(
        seq=n,
        event_id=event["id"],
        job_id=event["subject"],
        type=event["type"],
        payload=orjson.dumps(event),
    )


@pytest.mark.parametrize(
    ("sink_filter", "event", "expected"),
    [
        (SinkFilter(), cloud_event(1), True),
        (SinkFilter(types=frozenset({SUBJOB_TRANSITION})), cloud_event(1), False),
        (SinkFilter(types=frozenset({JOB_TRANSITION})), cloud_event(1), True),
        (SinkFilter(statuses=frozenset({"FAIL"})), cloud_event(1, to="SUCCESS"), False),
        (SinkFilter(statuses=frozenset({"FAIL"})), cloud_event(1, to="FAIL"), True),
        (SinkFilter(terminal_only=True), cloud_event(1, terminal=False), False),
        (SinkFilter(terminal_only=True), cloud_event(1, terminal=True), True),
        (
            SinkFilter(labels=MappingProxyType({"team": "a", "env": "prod"})),
            cloud_event(1, labels={"team": "a"}),
            False,
        ),
        (
            SinkFilter(labels=MappingProxyType({"team": "a"})),
            cloud_event(1, labels={"team": "a", "env": "prod"}),
            True,
        ),
    ],
)
def test_filters(sink_filter: SinkFilter, event: dict[str, Any], expected: bool) -> None:
    assert matches(sink_filter, event) is expected


async def test_file_sink_appends_and_reopens_after_rotation(tmp_path: Path) -> None:
    config = SinkConfig(
        type="file", name="file", options=FileOptions(path=Path("out/events.jsonl"), fsync="always")
    )
    sink = FileSink(config, SinkContext(state_dir=tmp_path))
    await sink.start()
    await sink.deliver([decode(stored(1)), decode(stored(2))])
    path = tmp_path / "out" / "events.jsonl"
    rotated = path.with_suffix(".1")
    path.rename(rotated)
    await sink.reopen()
    await sink.deliver([decode(stored(3))])
    await sink.close()
    assert [orjson.loads(line)["id"] for line in rotated.read_bytes().splitlines()] == [
        "id-job1-1",
        "id-job1-2",
    ]
    assert [orjson.loads(line)["id"] for line in path.read_bytes().splitlines()] == ["id-job1-3"]


async def test_log_sink_logs_one_event_per_transition(tmp_path: Path) -> None:
    sink = LogSink(SinkConfig(type="log", name="log"), SinkContext(state_dir=tmp_path))
    with capture_logs() as logs:
        await sink.deliver([decode(stored(1)), decode(stored(2, kind=SUBJOB_TRANSITION))])
    assert [entry["event"] for entry in logs] == ["job.transition", "subjob.transition"]
    assert logs[0]["event_id"] == "id-job1-1"
    assert logs[0]["to"] == "RUNNING" and logs[0]["job_id"] == "job1"


def test_unknown_sink_type_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        create_sink(SinkConfig(type="nosuch", name="x"), SinkContext(state_dir=tmp_path), 3)
    assert caught.value.key == "sinks[3].type"


def test_third_party_sink_is_found_through_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = (
        "class AcmeSink:\n"
        "    def __init__(self, config, context):\n"
        "        self.name = config.name\n"
        "        self.options = dict(config.options)\n"
    )
    entries = {"acme": "acme_sink:AcmeSink"}
    with sink_plugin(tmp_path, monkeypatch, module="acme_sink", source=source, entries=entries):
        assert sink_class("acme").__name__ == "AcmeSink"
        sink: Any = create_sink(
            SinkConfig(type="acme", name="mine", options={"topic": "t"}),
            SinkContext(state_dir=tmp_path),
            0,
        )
    assert (sink.name, sink.options) == ("mine", {"topic": "t"})


class FlakySink:
    """Fails its first ``failures`` deliveries, then records what it gets."""

    def __init__(self, failures: int) -> None:
        self.name = "flaky"
        self.failures = failures
        self.attempts = 0
        self.received: list[str] = []

    async def start(self) -> None:
        return None

    async def deliver(self, batch: Sequence[Delivery]) -> None:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionError("endpoint down")
        self.received.extend(item.event.event_id for item in batch)

    async def reopen(self) -> None:
        return None

    async def close(self) -> None:
        return None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "db.sqlite")
    await opened.open()
    yield opened
    await opened.close()


async def record_events(
    store: SQLiteStore, job_id: str, count: int, terminal_last: bool = False
) -> None:
    (registration,) = await store.register(
        [NewJob(job_id=job_id, project_id="p", account="a", labels={})], now=1.0
    )
    events = []
    for n in range(count):
        data = cloud_event(n, job=job_id, terminal=terminal_last and n == count - 1)
        events.append(
            NewEvent(
                event_id=data["id"], job_id=job_id, type=data["type"], payload=orjson.dumps(data)
            )
        )
    await store.record(registration.job, events)


async def test_position_advances_only_after_acknowledgement(store: SQLiteStore) -> None:
    await record_events(store, "job1", 3)
    sink = FlakySink(failures=2)
    runner = SinkRunner(sink, SinkFilter(), store, retry=FAST_RETRY)
    task = asyncio.create_task(runner.run())
    try:
        await async_wait_until(lambda: sink.attempts >= 1, timeout=10)
        assert await store.get_position("flaky") == 0, "no ack, no progress"
        await async_wait_until(lambda: len(sink.received) == 3, timeout=10)
        await async_wait_until(lambda: runner.position == 3, timeout=10)
        assert await store.get_position("flaky") == 3
        assert sink.received == ["id-job1-0", "id-job1-1", "id-job1-2"]
        assert runner.failures == 2
        await record_events(store, "job2", 2)
        runner.notify()
        await async_wait_until(lambda: len(sink.received) == 5, timeout=10)
    finally:
        task.cancel()


async def test_restarted_runner_resumes_from_its_position(store: SQLiteStore) -> None:
    await record_events(store, "job1", 4)
    await store.set_position("flaky", 2)
    sink = FlakySink(failures=0)
    runner = SinkRunner(sink, SinkFilter(), store, retry=FAST_RETRY)
    task = asyncio.create_task(runner.run())
    try:
        await async_wait_until(lambda: len(sink.received) == 2, timeout=10)
        assert sink.received == ["id-job1-2", "id-job1-3"]
        assert await runner.wait_caught_up(10)
    finally:
        task.cancel()


async def test_filtered_events_still_advance_the_position(store: SQLiteStore) -> None:
    await record_events(store, "job1", 3, terminal_last=True)
    sink = FlakySink(failures=0)
    runner = SinkRunner(sink, SinkFilter(terminal_only=True), store, retry=FAST_RETRY)
    task = asyncio.create_task(runner.run())
    try:
        await async_wait_until(lambda: runner.position == 3, timeout=10)
        assert sink.received == ["id-job1-2"]
        assert await store.get_position("flaky") == 3
    finally:
        task.cancel()


class GatedSink:
    """Delivers each batch only once the test releases its first event."""

    def __init__(self, *, concurrency: int, batch_max: int) -> None:
        self.name = "gated"
        self.concurrency = concurrency
        self.batch_max = batch_max
        self.started: list[list[str]] = []
        self._gates: dict[str, asyncio.Event] = {}

    def gate(self, event_id: str) -> asyncio.Event:
        return self._gates.setdefault(event_id, asyncio.Event())

    async def start(self) -> None:
        return None

    async def deliver(self, batch: Sequence[Delivery]) -> None:
        ids = [item.event.event_id for item in batch]
        self.started.append(ids)
        await self.gate(ids[0]).wait()

    async def reopen(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_concurrent_sink_acks_out_of_order_and_position_is_the_low_watermark(
    store: SQLiteStore,
) -> None:
    await record_events(store, "job1", 2)  # seq 1, 2
    await record_events(store, "job2", 2)  # seq 3, 4
    await record_events(store, "job3", 1)  # seq 5
    sink = GatedSink(concurrency=3, batch_max=1)
    runner = SinkRunner(sink, SinkFilter(), store, retry=FAST_RETRY)
    task = asyncio.create_task(runner.run())
    try:
        await async_wait_until(lambda: len(sink.started) == 3, timeout=10)
        assert sink.started == [["id-job1-0"], ["id-job2-0"], ["id-job3-0"]], "one per job"
        sink.gate("id-job2-0").set()
        await async_wait_until(lambda: ["id-job2-1"] in sink.started, timeout=10)
        sink.gate("id-job2-1").set()
        sink.gate("id-job3-0").set()
        await async_wait_until(lambda: runner.delivered == 3, timeout=10)
        assert runner.position == 0 and await store.get_position("gated") == 0
        assert ["id-job1-1"] not in sink.started, "job1's second event waits for its first"
        sink.gate("id-job1-0").set()
        await async_wait_until(lambda: ["id-job1-1"] in sink.started, timeout=10)
        await async_wait_until(lambda: runner.position == 1, timeout=10)
        sink.gate("id-job1-1").set()
        await async_wait_until(lambda: runner.position == 5, timeout=10)
        assert await store.get_position("gated") == 5
        assert await runner.wait_caught_up(10)
    finally:
        task.cancel()


async def test_read_ahead_is_bounded_while_a_batch_is_stuck(store: SQLiteStore) -> None:
    await record_events(store, "job1", 30)
    await record_events(store, "job2", 30)
    sink = GatedSink(concurrency=1, batch_max=5)
    runner = SinkRunner(sink, SinkFilter(), store, batch_size=5, window=10, retry=FAST_RETRY)
    task = asyncio.create_task(runner.run())
    try:
        await async_wait_until(lambda: sink.started, timeout=10)
        await async_wait_until(lambda: runner.stats()["held"] == runner.read_ahead, timeout=10)
        assert runner.read_ahead == 10 and len(sink.started) == 1
        for n in range(0, 30, 5):
            sink.gate(f"id-job1-{n}").set()
            sink.gate(f"id-job2-{n}").set()
        await async_wait_until(lambda: runner.position == 60, timeout=10)
        delivered = [event_id for batch in sink.started for event_id in batch]
        assert delivered == [f"id-job1-{n}" for n in range(30)] + [
            f"id-job2-{n}" for n in range(30)
        ], "one slot: log order, like the file sink"
        assert all(len(batch) <= 5 for batch in sink.started)
    finally:
        task.cancel()
