"""Dead-letter files: durable appends, atomic rewrites that never lose a
concurrent append (threads and processes), torn lines, and the redelivery
service's bookkeeping."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from jobwatchd.models import JOB_TRANSITION, StoredEvent
from jobwatchd.sinks import Delivery
from jobwatchd.sinks.deadletters import DeadLetter, DeadLetterService, DeadLetterStore


def entry(sink: str, n: int, *, job: str = "job1", reason: str = "HTTP 400") -> DeadLetter:
    event_id = f"{job}-ev-{n}"
    event = {"specversion": "1.0", "id": event_id, "type": JOB_TRANSITION, "data": {"n": n}}
    item = Delivery(
        StoredEvent(
            seq=n,
            event_id=event_id,
            job_id=job,
            type=JOB_TRANSITION,
            payload=orjson.dumps(event),
        ),
        event,
    )
    return DeadLetter.of(
        sink, item, reason=reason, status=400, attempts=1, first_attempt_at=1_700_000_000.0
    )


def test_append_read_and_round_trip(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path)
    written = [entry("hook", 1), entry("hook", 2, job="job2")]
    path = store.append("hook", written)
    store.append("other", [entry("other", 3)])
    assert path == tmp_path / "dead-letters" / "hook.jsonl"
    assert store.read("hook") == written
    assert store.sinks() == ["hook", "other"]
    assert [e.event_id for e in store.read()] == ["job1-ev-1", "job2-ev-2", "job1-ev-3"]
    line = orjson.loads(path.read_bytes().splitlines()[0])
    assert line["event"]["id"] == "job1-ev-1" and line["reason"] == "HTTP 400"
    assert line["first_attempt_at"] == "2023-11-14T22:13:20.000Z"
    assert written[0].delivery().cloud_event["data"] == {"n": 1}
    assert path.stat().st_mode & 0o077 == 0, "dead letters may hold private data"


def test_a_torn_last_line_is_skipped_and_kept_apart(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path)
    path = store.append("hook", [entry("hook", 1)])
    with open(path, "ab") as handle:
        handle.write(b'{"sink": "hook", "event_id": "half')  # a crash mid-append
    store.append("hook", [entry("hook", 2)])
    assert [e.event_id for e in store.read("hook")] == ["job1-ev-1", "job1-ev-2"]
    store.settle("hook", ["job1-ev-1"], {})
    assert [e.event_id for e in store.read("hook")] == ["job1-ev-2"]
    assert b'"event_id": "half' in path.read_bytes(), "unreadable lines are kept verbatim"


def test_settle_removes_delivered_and_notes_failures(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path)
    store.append("hook", [entry("hook", n) for n in range(3)])
    store.settle("hook", ["job1-ev-0"], {"job1-ev-1": "HTTP 503"})
    left = store.read("hook")
    assert [(e.event_id, e.redelivery_attempts, e.last_redelivery_error) for e in left] == [
        ("job1-ev-1", 1, "HTTP 503"),
        ("job1-ev-2", 0, None),
    ]
    store.settle("hook", ["job1-ev-1", "job1-ev-2"], {})
    assert store.read("hook") == []
    assert not store.path("hook").exists()
    with pytest.raises(ValueError, match="invalid sink name"):
        store.path("../escape")


def _append_many(state_dir: str, sink: str, start: int, count: int) -> None:
    store = DeadLetterStore(Path(state_dir))
    for n in range(start, start + count):
        store.append(sink, [entry(sink, n)])


def test_concurrent_appends_and_rewrites_lose_nothing(tmp_path: Path) -> None:
    """Two processes and two threads append while a third thread keeps
    rewriting the file (removing the entries it was told to)."""
    store = DeadLetterStore(tmp_path)
    removable = [entry("hook", n) for n in range(10_000, 10_050)]
    store.append("hook", removable)
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_append_many, args=(str(tmp_path), "hook", start, 150))
        for start in (0, 1000)
    ]
    threads = [
        threading.Thread(target=_append_many, args=(str(tmp_path), "hook", start, 150))
        for start in (2000, 3000)
    ]
    stop = threading.Event()
    rewrites = 0

    def rewrite() -> None:
        nonlocal rewrites
        for victim in removable:
            store.settle("hook", [victim.event_id], {})
            rewrites += 1
        while not stop.is_set():
            store.settle("hook", [], {"job1-ev-0": "noted"})
            rewrites += 1

    rewriter = threading.Thread(target=rewrite)
    for process in processes:
        process.start()
    rewriter.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    stop.set()
    rewriter.join(timeout=60)
    assert rewrites >= len(removable)
    ids = [e.event_id for e in store.read("hook")]
    expected = {
        f"job1-ev-{n}" for start in (0, 1000, 2000, 3000) for n in range(start, start + 150)
    }
    assert len(ids) == len(set(ids)) == len(expected), "no line lost, torn or doubled"
    assert set(ids) == expected


class FakeResender:
    """Acknowledges everything except the event ids in ``refuse``."""

    def __init__(self, refuse: set[str], *, batch_max: int = 1) -> None:
        self.name = "hook"
        self.batch_max = batch_max
        self.concurrency = 2
        self.refuse = refuse
        self.sent: list[list[str]] = []

    async def resend(self, batch: Sequence[Delivery]) -> str | None:
        ids = [item.event.event_id for item in batch]
        self.sent.append(ids)
        assert all(item.cloud_event["id"] == item.event.event_id for item in batch)
        return "HTTP 400: still wrong" if self.refuse & set(ids) else None


@pytest.mark.parametrize("batch_max", [1, 2])
async def test_redelivery_keeps_job_order_and_stops_a_job_at_its_failure(
    tmp_path: Path, batch_max: int
) -> None:
    store = DeadLetterStore(tmp_path)
    store.append(
        "hook",
        [entry("hook", n, job="a") for n in range(3)]
        + [entry("hook", n, job="b") for n in range(3, 5)]
        + [entry("hook", 3, job="b")],  # dead-lettered twice (after a restart): sent once
    )
    store.append("gone", [entry("gone", 9)])
    sender = FakeResender({"a-ev-0"} if batch_max == 1 else {"a-ev-2"}, batch_max=batch_max)
    service = DeadLetterService(store, lambda: [sender, object()])
    report = await service.redeliver()
    sent = [event_id for batch in sender.sent for event_id in batch]
    assert sorted(sent) == sorted(set(sent)), "each entry at most once"
    if batch_max == 1:
        assert sent.count("a-ev-0") == 1 and "a-ev-1" not in sent, "a's later events wait"
        assert sorted(report.redelivered) == ["b-ev-3", "b-ev-4"]
        left = {e.event_id: e for e in store.read("hook")}
        assert set(left) == {"a-ev-0", "a-ev-1", "a-ev-2"}
        assert left["a-ev-0"].last_redelivery_error == "HTTP 400: still wrong"
        assert (left["a-ev-1"].last_redelivery_error or "").startswith("not attempted")
    else:
        assert ["a-ev-0", "a-ev-1"] in sender.sent and ["a-ev-2"] in sender.sent
        assert sorted(report.redelivered) == ["a-ev-0", "a-ev-1", "b-ev-3", "b-ev-4"]
        assert [e.event_id for e in store.read("hook")] == ["a-ev-2"]
    failed: dict[str, Any] = {f["event_id"]: f for f in report.failed}
    assert "not configured" in failed["job1-ev-9"]["reason"]
    assert [e.event_id for e in store.read("gone")] == ["job1-ev-9"]


async def test_redeliver_by_id_reports_unknown_ids(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path)
    store.append("hook", [entry("hook", n) for n in range(3)])
    sender = FakeResender(set())
    service = DeadLetterService(store, lambda: [sender])
    report = await service.redeliver(sink="hook", event_ids=["job1-ev-1", "nope"])
    assert (report.redelivered, report.not_found) == (["job1-ev-1"], ["nope"])
    assert [e.event_id for e in store.read("hook")] == ["job1-ev-0", "job1-ev-2"]
