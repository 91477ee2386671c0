"""Dead letters: events a sink gave up on, kept until an operator redelivers them.

Each sink has one JSON-lines file, ``<state_dir>/dead-letters/<sink>.jsonl``;
a line is one :class:`DeadLetter` holding the whole CloudEvent, so a file
stays redeliverable after the event log was purged.

Every append, read and rewrite holds an exclusive ``flock`` on a sidecar
``<sink>.jsonl.lock`` (never replaced, unlike the data file, which a rewrite
swaps atomically), so the daemon appending, a redelivery rewriting and another
process reading never interleave or lose a line.

:class:`DeadLetterService` is what the HTTP API (``GET /v1/dead-letters``,
``POST /v1/dead-letters/redeliver``, in :mod:`jobwatchd.http.deadletters`)
calls: it sends entries again through the configured sink, removes those
acknowledged and annotates the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

import orjson

from jobwatchd.logs import get_logger
from jobwatchd.models import StoredEvent, iso_time
from jobwatchd.sinks import Delivery

log = get_logger("jobwatchd.deadletters")

DIRECTORY: Final = "dead-letters"
SUFFIX: Final = ".jsonl"
_SINK_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_REDELIVER_IDS: Final = 10_000


def valid_sink_name(name: str) -> bool:
    """Whether ``name`` can name a sink (and so a dead-letter file)."""
    return _SINK_NAME.fullmatch(name) is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """One event a sink gave up on, with why."""

    sink: str
    event_id: str
    seq: int
    job_id: str
    type: str
    reason: str
    status: int | None
    """HTTP status of the last answer; None when there was none (timeout, connection)."""
    attempts: int
    first_attempt_at: str
    dead_lettered_at: str
    event: Mapping[str, Any]
    redelivery_attempts: int = 0
    last_redelivery_error: str | None = None

    @classmethod
    def of(
        cls,
        sink: str,
        item: Delivery,
        *,
        reason: str,
        status: int | None,
        attempts: int,
        first_attempt_at: float,
        now: float | None = None,
    ) -> DeadLetter:
        """The dead letter of a delivery."""
        return cls(
            sink=sink,
            event_id=item.event.event_id,
            seq=item.event.seq,
            job_id=item.event.job_id,
            type=item.event.type,
            reason=reason,
            status=status,
            attempts=attempts,
            first_attempt_at=iso_time(first_attempt_at),
            dead_lettered_at=iso_time(time.time() if now is None else now),
            event=item.cloud_event,
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object of a line (and of the API)."""
        return {
            "sink": self.sink,
            "event_id": self.event_id,
            "seq": self.seq,
            "job_id": self.job_id,
            "type": self.type,
            "reason": self.reason,
            "status": self.status,
            "attempts": self.attempts,
            "first_attempt_at": self.first_attempt_at,
            "dead_lettered_at": self.dead_lettered_at,
            "redelivery_attempts": self.redelivery_attempts,
            "last_redelivery_error": self.last_redelivery_error,
            "event": self.event,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> DeadLetter:
        """Parse a line; KeyError/TypeError/ValueError when it is not one."""
        event = value["event"]
        if not isinstance(event, Mapping):
            raise TypeError("event must be an object")
        status = value.get("status")
        return cls(
            sink=str(value["sink"]),
            event_id=str(value["event_id"]),
            seq=int(value["seq"]),
            job_id=str(value["job_id"]),
            type=str(value["type"]),
            reason=str(value["reason"]),
            status=None if status is None else int(status),
            attempts=int(value["attempts"]),
            first_attempt_at=str(value["first_attempt_at"]),
            dead_lettered_at=str(value["dead_lettered_at"]),
            event=event,
            redelivery_attempts=int(value.get("redelivery_attempts") or 0),
            last_redelivery_error=value.get("last_redelivery_error"),
        )

    def delivery(self) -> Delivery:
        """The event as a sink takes it."""
        stored = StoredEvent(
            seq=self.seq,
            event_id=self.event_id,
            job_id=self.job_id,
            type=self.type,
            payload=orjson.dumps(self.event),
        )
        return Delivery(stored, self.event)


def _parse(raw: bytes, path: Path) -> tuple[list[DeadLetter], list[bytes]]:
    """The entries of a file, and the lines that are not entries (kept verbatim)."""
    entries: list[DeadLetter] = []
    unreadable: list[bytes] = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            entries.append(DeadLetter.from_json(orjson.loads(line)))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            unreadable.append(line)
    if unreadable:
        log.warning("deadletters.unreadable_lines", path=str(path), lines=len(unreadable))
    return entries, unreadable


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class DeadLetterStore:
    """The dead-letter files of a state directory. Blocking: call from a thread."""

    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir / DIRECTORY

    def path(self, sink: str) -> Path:
        """The file of ``sink``."""
        if not _SINK_NAME.fullmatch(sink):
            raise ValueError(f"invalid sink name {sink!r}")
        return self.directory / f"{sink}{SUFFIX}"

    @contextlib.contextmanager
    def _locked(self, sink: str) -> Iterator[Path]:
        path = self.path(sink)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield path
        finally:
            os.close(fd)  # releases the lock

    def sinks(self) -> list[str]:
        """Sinks that have a dead-letter file."""
        if not self.directory.is_dir():
            return []
        return sorted(
            path.name[: -len(SUFFIX)]
            for path in self.directory.iterdir()
            if path.name.endswith(SUFFIX) and _SINK_NAME.fullmatch(path.name[: -len(SUFFIX)])
        )

    def append(self, sink: str, entries: Sequence[DeadLetter]) -> Path:
        """Append ``entries`` durably (fsync) to the file of ``sink``; returns its path."""
        data = b"".join(orjson.dumps(entry.to_json()) + b"\n" for entry in entries)
        with self._locked(sink) as path:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data  # a crash cut the last line short: start a new one
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        return path

    def read(self, sink: str | None = None) -> list[DeadLetter]:
        """The entries of one sink, or of all, in file order."""
        entries: list[DeadLetter] = []
        for name in [sink] if sink is not None else self.sinks():
            with self._locked(name) as path:
                try:
                    raw = path.read_bytes()
                except FileNotFoundError:
                    continue
            entries.extend(_parse(raw, path)[0])
        return entries

    def rewrite(self, sink: str, change: Callable[[list[DeadLetter]], list[DeadLetter]]) -> None:
        """Replace the entries of ``sink`` by ``change(entries)``, atomically.

        Lines that cannot be parsed are kept as they are; an empty result
        removes the file.
        """
        with self._locked(sink) as path:
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                raw = b""
            entries, unreadable = _parse(raw, path)
            kept = change(entries)
            if not kept and not unreadable:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                return
            data = b"".join(line + b"\n" for line in unreadable)
            data += b"".join(orjson.dumps(entry.to_json()) + b"\n" for entry in kept)
            temporary = path.with_name(path.name + ".tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, path)
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def settle(self, sink: str, delivered: Iterable[str], failed: Mapping[str, str]) -> None:
        """Remove the entries of delivered event ids; note the error on failed ones."""
        gone = set(delivered)

        def change(entries: list[DeadLetter]) -> list[DeadLetter]:
            kept = []
            for entry in entries:
                if entry.event_id in gone:
                    continue
                error = failed.get(entry.event_id)
                kept.append(
                    entry
                    if error is None
                    else replace(
                        entry,
                        redelivery_attempts=entry.redelivery_attempts + 1,
                        last_redelivery_error=error,
                    )
                )
            return kept

        self.rewrite(sink, change)


@runtime_checkable
class Resender(Protocol):
    """A sink that can send dead letters again."""

    name: str
    batch_max: int
    concurrency: int

    async def resend(self, batch: Sequence[Delivery]) -> str | None:
        """One attempt, no retry: None when acknowledged, else why not."""
        ...


@dataclass(slots=True)
class RedeliveryReport:
    """What a redelivery did."""

    redelivered: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The API answer."""
        return {
            "redelivered": self.redelivered,
            "failed": self.failed,
            "not_found": self.not_found,
        }


async def _resend_job(
    sender: Resender, entries: Sequence[DeadLetter], limit: asyncio.Semaphore
) -> dict[str, str | None]:
    """Send one job's entries in order; after a failure, the rest wait for the next time."""
    outcome: dict[str, str | None] = {}
    size = max(1, sender.batch_max)
    for start in range(0, len(entries), size):
        chunk = entries[start : start + size]
        async with limit:
            error = await sender.resend([entry.delivery() for entry in chunk])
        for entry in chunk:
            outcome[entry.event_id] = error
        if error is not None:
            for entry in entries[start + size :]:
                outcome[entry.event_id] = (
                    f"not attempted: an earlier event of job {entry.job_id} was not delivered"
                )
            break
    return outcome


class DeadLetterService:
    """Lists dead letters and sends them again through the running sinks."""

    def __init__(self, store: DeadLetterStore, sinks: Callable[[], Iterable[object]]) -> None:
        self.store = store
        self._sinks = sinks
        self._locks: dict[str, asyncio.Lock] = {}

    def _senders(self) -> dict[str, Resender]:
        return {sink.name: sink for sink in self._sinks() if isinstance(sink, Resender)}

    async def read(self, sink: str | None = None) -> list[DeadLetter]:
        """Every dead letter, or those of ``sink``."""
        return await asyncio.to_thread(self.store.read, sink)

    def known(self, sink: str) -> bool:
        """Whether ``sink`` is configured or has a dead-letter file."""
        configured = {getattr(each, "name", None) for each in self._sinks()}
        return sink in configured or self.store.path(sink).exists()

    async def redeliver(
        self, *, sink: str | None = None, event_ids: Sequence[str] | None = None
    ) -> RedeliveryReport:
        """Send the chosen entries (all when ``event_ids`` is None) again.

        Per job they go in file order and stop at the job's first failure;
        jobs go concurrently up to the sink's ``concurrency``. Acknowledged
        entries leave the file; the others stay with the error noted.
        """
        report = RedeliveryReport()
        entries = await self.read(sink)
        if event_ids is not None:
            wanted = set(event_ids)
            entries = [entry for entry in entries if entry.event_id in wanted]
            found = {entry.event_id for entry in entries}
            report.not_found = [event_id for event_id in event_ids if event_id not in found]
        by_sink: dict[str, list[DeadLetter]] = {}
        seen: set[tuple[str, str]] = set()
        for entry in entries:
            if (entry.sink, entry.event_id) not in seen:  # dead-lettered twice: send once
                seen.add((entry.sink, entry.event_id))
                by_sink.setdefault(entry.sink, []).append(entry)
        senders = self._senders()
        for name, chosen in by_sink.items():
            sender = senders.get(name)
            if sender is None:
                report.failed.extend(
                    {
                        "sink": name,
                        "event_id": entry.event_id,
                        "reason": f"sink {name!r} is not configured, or cannot redeliver",
                    }
                    for entry in chosen
                )
                continue
            async with self._locks.setdefault(name, asyncio.Lock()):
                outcome = await self._redeliver_sink(sender, chosen)
            delivered = [event_id for event_id, error in outcome.items() if error is None]
            failed = {event_id: error for event_id, error in outcome.items() if error is not None}
            await asyncio.to_thread(self.store.settle, name, delivered, failed)
            report.redelivered.extend(delivered)
            report.failed.extend(
                {"sink": name, "event_id": event_id, "reason": error}
                for event_id, error in failed.items()
            )
            log.info(
                "deadletters.redelivered", sink=name, redelivered=len(delivered), failed=len(failed)
            )
        return report

    @staticmethod
    async def _redeliver_sink(
        sender: Resender, entries: Sequence[DeadLetter]
    ) -> dict[str, str | None]:
        by_job: dict[str, list[DeadLetter]] = {}
        for entry in entries:
            by_job.setdefault(entry.job_id, []).append(entry)
        limit = asyncio.Semaphore(max(1, sender.concurrency))
        outcomes = await asyncio.gather(
            *(_resend_job(sender, job_entries, limit) for job_entries in by_job.values())
        )
        merged: dict[str, str | None] = {}
        for outcome in outcomes:
            merged.update(outcome)
        return merged
