"""The tracker: registration, the in-memory state of active jobs, and carrying
out what :mod:`jobwatchd.policy` decides each poll outcome does to a job (see
docs/statuses-and-events.md): the store write, the events, the schedule, the log line.

Only transitions (and registrations) are written to the store; a poll that
changes nothing costs no write. Every write is conditional on the version it
was computed from, and events are recorded in the same transaction as the job
update, before any sink sees them.

An active job costs a few hundred bytes of memory: the full record (labels,
entities, history) stays in the store and is read back only when the job
changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobwatchd.cloud.client import UpstreamClient
from jobwatchd.cloud.formats import LazyAnswer, ServiceAnswer
from jobwatchd.engine.scheduler import Scheduler, lane_key
from jobwatchd.events import build_events
from jobwatchd.learning import MAX_MODELS, DurationModel, learnable_type
from jobwatchd.logs import get_logger
from jobwatchd.metrics import Metrics, status_label
from jobwatchd.models import (
    DEFAULT_SERVICE,
    FAIL,
    SUCCESS,
    JobRecord,
    NewJob,
    StoredEvent,
    bounded_text,
    is_terminal,
    iso_time,
)
from jobwatchd.outcome import Outcome, OutcomeKind, UpstreamError
from jobwatchd.overdue import OverdueIndex
from jobwatchd.policy import (
    Change,
    Decision,
    Reschedule,
    decide,
    decide_due,
    retry,
)
from jobwatchd.policy import PollSettings as PollSettings  # noqa: PLC0414 (re-exported)
from jobwatchd.policy import parse_time as parse_time  # noqa: PLC0414 (re-exported)
from jobwatchd.statemachine import Snapshot
from jobwatchd.store import ActiveRecord, Registration, StaleWriteError, Store

_FRESH = Snapshot()  # shared by every job not observed yet (snapshots are immutable)
RESTORE_PAGE = 5000

log = get_logger("jobwatchd.tracker")


class _GcPauses:
    depth = 0
    resume = False


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while many long-lived objects are
    built (a batch registration, the restore). Each full collection it would
    run meanwhile walks every live object (a million active jobs) and finds
    nothing; reference counting still frees everything else. Pauses nest: the
    collector resumes, if it was enabled, when the outermost one ends."""
    if _GcPauses.depth == 0:
        _GcPauses.resume = gc.isenabled()
        gc.disable()
    _GcPauses.depth += 1
    try:
        yield
    finally:
        _GcPauses.depth -= 1
        if _GcPauses.depth == 0 and _GcPauses.resume:
            gc.enable()


@dataclass(slots=True, kw_only=True)
class ActiveJob:
    """What polling needs of a job; the rest lives in the store."""

    job_id: str
    project_id: str
    account: str
    service: str = DEFAULT_SERVICE
    lane: str = ""
    """The scheduler lane: the account's rate limit for the service (derived when not given)."""
    status: str
    version: int
    deadline: float
    snapshot: Snapshot
    polls: int = 0
    attempt: int = 0
    not_found_since: float | None = None
    rejections: int = 0
    last_error: dict[str, Any] | None = None
    job_type: str | None = None
    began_at: float | None = None
    progress: float | None = None
    """The percentage upstream reported at the last poll (its format having one)."""

    def __post_init__(self) -> None:
        if not self.lane:
            self.lane = lane_key(self.account, self.service)


@dataclass(slots=True)
class _AccountState:
    last_poll: OutcomeKind | None = None
    last_poll_at: float = 0.0
    reachable: bool = True
    last_error: UpstreamError | None = None
    last_error_at: float = 0.0


@dataclass(slots=True)
class _StoreHealth:
    """Whether the last write of a poll's outcome reached the store."""

    failing_since: float | None = None
    last_error: str | None = None
    failures: int = 0
    logged_at: float = -math.inf
    unlogged: int = 0


# A failing store is logged at most this often; the count of failures in
# between is part of the next line.
STORE_FAILURE_LOG_INTERVAL = 10.0
STORE_WRITE_FAILED = "STORE_WRITE_FAILED"


@dataclass(slots=True)
class _Models:
    by_type: dict[str, DurationModel] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    refused_logged: bool = False


class Tracker:
    """Owns the set of active jobs and turns poll outcomes into transitions."""

    def __init__(
        self,
        *,
        store: Store,
        scheduler: Scheduler,
        clients: Mapping[str, UpstreamClient],
        settings: PollSettings,
        on_events: Callable[[Sequence[StoredEvent]], None],
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics or Metrics()
        self.scheduler = scheduler
        self.clients = clients
        self.settings = settings
        self._on_events = on_events
        self._rng = rng or random.Random()
        self._clock = clock
        self.active: dict[str, ActiveJob] = {}
        self._terminal_waiters: dict[str, asyncio.Event] = {}
        self.polls_done = 0
        self._accounts: dict[str, _AccountState] = {}
        self._poll_metrics: dict[tuple[str, OutcomeKind], tuple[Any, Any]] = {}
        self._models = _Models()
        self._overdue = OverdueIndex()
        self._store_health = _StoreHealth()
        self._restoring = False
        self._deleted_while_restoring: set[str] = set()
        self.restored = 0
        # In a fleet, new jobs are polled by whichever instance claims them.
        self.poll_on_register = True

    # -- start-up -------------------------------------------------------------------

    async def load_models(self) -> None:
        """Load the learned duration models."""
        stored = await self.store.load_duration_models()
        self._models.by_type = {
            job_type: DurationModel.from_json(data) for job_type, data in stored.items()
        }

    async def flush_models(self) -> None:
        """Persist the models that learned something since the last flush."""
        if not self._models.dirty:
            return
        dirty, self._models.dirty = self._models.dirty, set()
        await self.store.save_duration_models(
            {name: self._models.by_type[name].to_json() for name in dirty}
        )

    async def restore(self) -> int:
        """Reload every active job from the store, page by page, and schedule
        it; the API serves meanwhile. Returns the count."""
        with gc_paused():
            count = await self._restore()
            # What the restore built lives as long as its jobs: keep it out of
            # every later collection, starting with the one that would walk
            # it all (everything allocated during the pause) once resumed.
            gc.freeze()
        return count

    async def _restore(self) -> int:
        self._restoring = True
        spread = max(self.settings.initial_delay, self.settings.backoff.min_interval)
        store = self.store
        # The next page is read (on the store's side) while this one is activated.
        fetching = asyncio.ensure_future(store.active_jobs_page(None, RESTORE_PAGE))
        try:
            while True:
                page = await fetching
                if page.cursor is not None:
                    fetching = asyncio.ensure_future(
                        store.active_jobs_page(page.cursor, RESTORE_PAGE)
                    )
                    await asyncio.sleep(0)  # let it start before the loop below holds the thread
                self.restored += self._activate_page(page.jobs, spread)
                if page.cursor is None:
                    return self.restored
        finally:
            if not fetching.done():
                fetching.cancel()
            elif not fetching.cancelled():
                fetching.exception()  # an error of a page never awaited is not logged twice
            self._restoring = False
            self._deleted_while_restoring.clear()

    def _activate_page(self, records: Sequence[ActiveRecord], spread: float) -> int:
        """:meth:`_activate` each record not held yet (nor deleted meanwhile),
        polled within ``spread`` seconds; the restore's hot loop, so it unpacks
        the tuples itself. Returns how many it activated."""
        active, deleted = self.active, self._deleted_while_restoring
        rand, schedule, intern = self._rng.random, self.scheduler.schedule, sys.intern
        index_overdue = self._overdue.add
        default_timeout = self.settings.timeout
        count = 0
        for record in records:
            (
                job_id,
                project_id,
                account,
                status,
                version,
                registered_at,
                timeout,
                polls,
                last_error,
                job_type,
                begin_time,
                snapshot,
                service,
            ) = record
            if job_id in active or job_id in deleted:
                continue
            account = intern(account)
            lane = intern(lane_key(account, service))
            job_type = job_type and intern(job_type)
            began_at = parse_time(begin_time) if begin_time else None
            active[job_id] = ActiveJob(
                job_id=job_id,
                project_id=intern(project_id),
                account=account,
                service=intern(service),
                lane=lane,
                status=intern(status),
                version=version,
                deadline=registered_at + (timeout or default_timeout),
                snapshot=Snapshot.from_json(snapshot) if snapshot else _FRESH,
                polls=polls,
                last_error=last_error,
                job_type=job_type,
                began_at=began_at,
            )
            index_overdue(job_type, account, began_at)
            schedule(job_id, lane, rand() * spread)
            count += 1
        return count

    def _activate(self, record: JobRecord | ActiveRecord, *, delay: float) -> None:
        job_id = record.job_id
        account = sys.intern(record.account)
        lane = sys.intern(lane_key(account, record.service))
        snapshot = record.snapshot
        job_type = record.job_type and sys.intern(record.job_type)
        began_at = parse_time(record.begin_time) if record.begin_time else None
        if job_id in self.active:  # held already (the restore meets a registration)
            self._forget_overdue(self.active[job_id])
        self.active[job_id] = ActiveJob(
            job_id=job_id,
            project_id=sys.intern(record.project_id),
            account=account,
            service=sys.intern(record.service),
            lane=lane,
            status=sys.intern(record.status),
            version=record.version,
            deadline=record.registered_at + (record.timeout or self.settings.timeout),
            snapshot=Snapshot.from_json(snapshot) if snapshot else _FRESH,
            polls=record.polls,
            last_error=record.last_error,
            job_type=job_type,
            began_at=began_at,
        )
        self._overdue.add(job_type, account, began_at)
        self.scheduler.schedule(job_id, lane, delay)

    # -- registration and queries -------------------------------------------------

    async def register(self, jobs: Sequence[NewJob]) -> list[Registration]:
        """Store ``jobs`` atomically and start polling the new ones."""
        results = await self.store.register(jobs, self._clock())
        self._store_write_succeeded()
        created = 0
        for result in results:
            if result.created:
                created += 1
                if self.poll_on_register:
                    self._activate(result.job, delay=self.settings.initial_delay)
        if created:
            self.metrics.registrations.inc(created)
            if created == 1:
                job = next(r.job for r in results if r.created)
                log.info(
                    "job.registered",
                    job_id=job.job_id,
                    project_id=job.project_id,
                    account=job.account,
                    service=job.service,
                )
            else:
                log.info("jobs.registered", count=created)
        return results

    async def get(self, job_id: str) -> JobRecord | None:
        """The job as stored, with the live counters of an active job."""
        return await self.store.get_job(job_id)

    async def list_jobs(
        self,
        *,
        status: str | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int = 100,
        after: str | None = None,
        service: str | None = None,
    ) -> list[JobRecord]:
        """A page of tracked jobs, by id, after the ``after`` id; filtered by
        status, service and labels."""
        return await self.store.list_jobs(
            status=status, labels=labels, limit=limit, after=after, service=service
        )

    async def count_by_status(self) -> dict[str, int]:
        """How many tracked jobs have each status (one query)."""
        return await self.store.count_by_status()

    async def event_log_lag(
        self, positions: Mapping[str, int]
    ) -> tuple[int, dict[str, float | None]]:
        """The event log's newest sequence number, and for each reader's position
        when the first event after it was recorded (None when there is none):
        how far each reader (a sink) is behind."""
        newest = await self.store.last_seq()
        pending = {
            name: await self.store.recorded_at_after(position)
            for name, position in positions.items()
        }
        return newest, pending

    async def delete(self, job_id: str) -> bool:
        """Stop tracking ``job_id``."""
        deleted = await self.store.delete_job(job_id)
        self._forget_overdue(self.active.pop(job_id, None))
        self.scheduler.remove(job_id)
        if self._restoring:
            self._deleted_while_restoring.add(job_id)
        self._wake_waiters(job_id)
        if deleted:
            log.info("job.deleted", job_id=job_id)
        return deleted

    async def wait_terminal(self, job_id: str, timeout: float) -> JobRecord | None:
        """Wait up to ``timeout`` seconds for the job to end; return it.

        Woken when this instance records the job's end, and on every change
        recorded elsewhere (another instance of a fleet), to check again.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            record = await self.get(job_id)
            remaining = deadline - loop.time()
            if record is None or record.terminal or remaining <= 0:
                return record
            event = self._terminal_waiters.setdefault(job_id, asyncio.Event())
            try:
                async with asyncio.timeout(remaining):
                    await event.wait()
            except TimeoutError:
                pass

    def _wake_waiters(self, job_id: str) -> None:
        event = self._terminal_waiters.pop(job_id, None)
        if event is not None:
            event.set()

    def changed_elsewhere(self) -> None:
        """Events were recorded by another instance: waiters check again."""
        waiters, self._terminal_waiters = self._terminal_waiters, {}
        for event in waiters.values():
            event.set()

    # -- fleet: jobs held by lease ------------------------------------------------

    def adopt(self, record: JobRecord, delay: float) -> bool:
        """Start polling a job this instance just leased; False if already held."""
        if record.job_id in self.active or record.terminal:
            return False
        self._activate(record, delay=delay)
        return True

    def drop(self, job_id: str) -> None:
        """Stop polling a job whose lease this instance lost (nothing is deleted)."""
        held = self.active.pop(job_id, None)
        if held is not None:
            self._forget_overdue(held)
            self.scheduler.remove(job_id)
            log.info("job.lease_lost", job_id=job_id)

    def schedule_snapshot(self) -> dict[str, float]:
        """Each held job's next poll (unix time), to hand over on shutdown."""
        now = self._clock()
        planned: dict[str, float] = {}
        for job_id in self.active:
            due_in = self.scheduler.due_in(job_id)
            planned[job_id] = now + (due_in if due_in is not None else 0.0)
        return planned

    def next_poll_at(self, job_id: str) -> float | None:
        """Wall-clock time of the job's next poll, if scheduled."""
        due_in = self.scheduler.due_in(job_id)
        return None if due_in is None else self._clock() + due_in

    def view(self, record: JobRecord) -> dict[str, Any]:
        """The job object the API serves (docs/http-api.md), with live counters for an
        active job."""
        live = self.active.get(record.job_id)
        polls, last_error, percent = record.polls, record.last_error, record.progress
        if live is not None and live.version == record.version:
            polls, last_error, percent = live.polls, live.last_error, live.progress
        next_poll = self.next_poll_at(record.job_id) if not record.terminal else None
        return {
            "job_id": record.job_id,
            "project_id": record.project_id,
            "account": record.account,
            "service": record.service,
            "status": record.status,
            "terminal": record.terminal,
            "job_type": record.job_type,
            "begin_time": record.begin_time,
            "end_time": record.end_time,
            "error_code": record.error_code,
            "fail_reason": record.fail_reason,
            "entities": record.entities,
            "labels": record.labels,
            "registered_at": iso_time(record.registered_at),
            "updated_at": iso_time(record.updated_at),
            "polls": polls,
            "next_poll_at": None if next_poll is None else iso_time(next_poll),
            "last_error": last_error,
            "progress": progress_of(record, percent),
            "history": record.history,
        }

    # -- polling ------------------------------------------------------------------

    def reschedule_after_crash(self, job_id: str) -> None:
        """Keep a job whose poll raised unexpectedly on the schedule."""
        job = self.active.get(job_id)
        if job is not None and self.scheduler.due_in(job_id) is None:
            self._schedule(
                job,
                retry(
                    job,
                    self._clock(),
                    self.settings,
                    rand=self._rng.random(),
                    models=self._models.by_type,
                ),
            )

    async def poll(self, job_id: str) -> None:
        """Poll ``job_id`` once and act on the outcome."""
        job = self.active.get(job_id)
        if job is None:
            return
        now = self._clock()
        expired = decide_due(
            job, now, self.settings, rand=self._rng.random(), models=self._models.by_type
        )
        if expired is not None:
            self._take(job, expired, now)
            await self._record(job, expired, now)
            return
        account = job.account
        started = time.monotonic()
        try:
            outcome = await self.clients[account].query(job.project_id, job.job_id, job.service)
        except Exception as exc:  # credentials unreadable, and the like: retry later
            outcome = Outcome(
                kind=OutcomeKind.TRANSIENT,
                error=UpstreamError(code=type(exc).__name__, message=str(exc), http_status=None),
            )
        self._count_poll(account, outcome, time.monotonic() - started)
        if self.active.get(job_id) is not job:  # deleted while in flight
            return
        self.polls_done += 1
        job.polls += 1
        await self._apply(job, outcome, self._clock())

    def _count_poll(self, account: str, outcome: Outcome, seconds: float) -> None:
        metrics = self.metrics
        key = (account, outcome.kind)
        children = self._poll_metrics.get(key)
        if children is None:  # labels() is a dict lookup under a lock: once per pair
            children = self._poll_metrics[key] = (
                metrics.polls.labels(account, outcome.kind.value),
                metrics.poll_duration.labels(account),
            )
        children[0].inc()
        children[1].observe(seconds)
        error = outcome.error
        if error is not None:
            status = str(error.http_status or 0)
            metrics.upstream_errors.labels(account, status, metrics.code_label(error.code)).inc()

    def _note_account(self, account: str, outcome: Outcome, reachable: bool) -> None:
        # On every poll: keep it cheap, render only when /readyz asks.
        state = self._accounts.get(account)
        if state is None:
            state = self._accounts[account] = _AccountState()
        state.last_poll = outcome.kind
        state.last_poll_at = self._clock()
        state.reachable = reachable
        if outcome.error is not None and not reachable:
            state.last_error = outcome.error
            state.last_error_at = state.last_poll_at

    def account_state(self, account: str) -> dict[str, Any]:
        """What the last poll of ``account`` said (for ``/readyz``)."""
        state = self._accounts.get(account)
        if state is None or state.last_poll is None:
            return {"last_poll": None}
        rendered: dict[str, Any] = {
            "last_poll": state.last_poll.value,
            "last_poll_at": iso_time(state.last_poll_at),
            "reachable": state.reachable,
        }
        if state.last_error is not None:
            rendered["last_error"] = state.last_error.to_json(iso_time(state.last_error_at))
        return rendered

    async def _apply(self, job: ActiveJob, outcome: Outcome, now: float) -> None:
        """Decide what ``outcome`` does to ``job`` (:func:`jobwatchd.policy.decide`), do it."""
        decision = decide(
            job, outcome, now, self.settings, rand=self._rng.random(), models=self._models.by_type
        )
        if decision.reachable is not None:
            self._note_account(job.account, outcome, decision.reachable)
        if outcome.response is not None:
            job.progress = outcome.response.progress
        self._take(job, decision, now)
        if decision.change is None:
            self._schedule(job, decision.poll)
        else:
            await self._record(job, decision, now)

    def _take(self, job: ActiveJob, decision: Decision, now: float) -> None:
        """What a decision says before any write: the job's counters and
        ``last_error``, what it learned, the log line, the account's pause."""
        if decision.last_error is not None:
            job.last_error = decision.last_error.to_json(iso_time(now))
        job.rejections = decision.rejections
        job.not_found_since = decision.not_found_since
        indexed = (job.job_type, job.began_at)
        job.began_at = decision.began_at
        if decision.job_type is not None and job.job_type is None:
            job.job_type = sys.intern(decision.job_type)
        if (job.job_type, job.began_at) != indexed and self.active.get(job.job_id) is job:
            self._overdue.remove(indexed[0], job.account, indexed[1])
            self._overdue.add(job.job_type, job.account, job.began_at)
        line = decision.log
        if line is not None:
            getattr(log, line.level)(line.event, **line.fields)
        if decision.pause_account is not None:
            # The vendor throttles per API: only this account's polls of this service wait.
            self.scheduler.pause(job.lane, decision.pause_account)
            self.metrics.rate_limit_pauses.labels(job.account).inc()

    async def _record(self, job: ActiveJob, decision: Decision, now: float) -> None:
        """Write the decision's change, then plan the next poll (if any)."""
        assert decision.change is not None
        recorded = await self._write(job, decision.change, now)
        self._schedule(job, decision.poll if recorded else decision.if_not_recorded)

    def _schedule(self, job: ActiveJob, plan: Reschedule | None) -> None:
        if plan is not None:
            job.attempt = plan.attempt
            self.scheduler.schedule(job.job_id, job.lane, plan.delay)

    async def _write(self, job: ActiveJob, change: Change, now: float) -> bool:
        """Persist a change with its events; True when it was recorded."""
        snapshot, transitions, response = change.snapshot, change.transitions, change.response
        try:
            record = await self._current_record(job)
            when = iso_time(now)
            if response is not None:
                record.job_type = response.job_type
                record.begin_time = response.begin_time
                record.end_time = response.end_time
                record.error_code = response.error_code
                record.fail_reason = response.fail_reason
                record.entities = (
                    response.recorded_entities
                    if isinstance(response, ServiceAnswer | LazyAnswer)
                    else response.entities
                )
                record.progress = response.progress
            record.status = snapshot.status
            record.snapshot = snapshot.to_json()
            record.updated_at = now
            record.polls = job.polls
            record.last_error = job.last_error
            record.history.extend(
                {"from": t.from_status, "to": t.to_status, "at": when}
                for t in transitions
                if t.kind == "job"
            )
            events = build_events(record, transitions, response=response, observed_at=now)
            stored = await self.store.record(record, events)
        except StaleWriteError:
            log.info("job.vanished", job_id=job.job_id)
            self._forget_overdue(self.active.pop(job.job_id, None))
            self.scheduler.remove(job.job_id)
            return False
        except Exception as exc:
            self._store_write_failed(job, exc, now)
            return False
        self._store_write_succeeded()
        job.version = record.version
        job.status = sys.intern(snapshot.status)
        job.snapshot = snapshot
        for transition, event in zip(transitions, events, strict=True):
            self.metrics.transitions.labels(event.type, status_label(transition.to_status)).inc()
        if is_terminal(snapshot.status):
            self._forget_overdue(self.active.pop(job.job_id, None))
            self.scheduler.remove(job.job_id)
            self._wake_waiters(job.job_id)
            self._learn(record)
        self._on_events(stored)
        return True

    def _store_write_failed(self, job: ActiveJob, exc: Exception, now: float) -> None:
        """Make a lost write visible: the job's ``last_error``, a metric, the
        store state in ``/readyz`` and a log line (at most one per
        STORE_FAILURE_LOG_INTERVAL). The job's snapshot is not advanced, so
        the next poll observes the same transitions and records them again."""
        job.last_error = {
            "code": STORE_WRITE_FAILED,
            "message": f"{type(exc).__name__}: {exc}",
            "http_status": None,
            "at": iso_time(now),
        }
        self.note_store_failure(exc, job_id=job.job_id)

    def note_store_failure(self, exc: Exception, *, job_id: str | None = None) -> None:
        """Count and (rate-limited) log a failed store write; ``/readyz`` reports
        the store as failing until a poll's write succeeds again."""
        health = self._store_health
        now = self._clock()
        message = f"{type(exc).__name__}: {exc}"
        self.metrics.store_write_failures.inc()
        if health.failing_since is None:
            health.failing_since = now
        health.last_error = message
        health.failures += 1
        health.unlogged += 1
        clock = time.monotonic()
        if clock - health.logged_at >= STORE_FAILURE_LOG_INTERVAL:
            log.error(
                "store.write_failed",
                job_id=job_id,
                error=message,
                failures_since_last_line=health.unlogged,
                exc_info=health.logged_at == -math.inf,
            )
            health.logged_at = clock
            health.unlogged = 0

    def _store_write_succeeded(self) -> None:
        health = self._store_health
        if health.failing_since is None:
            return
        log.warning(
            "store.recovered",
            failures=health.failures,
            failing_for=round(self._clock() - health.failing_since, 3),
        )
        self._store_health = _StoreHealth()

    def store_state(self) -> dict[str, Any]:
        """Whether poll outcomes reach the store (for ``/readyz``)."""
        health = self._store_health
        if health.failing_since is None:
            return {"status": "ok"}
        return {
            "status": "failing",
            "failing_since": iso_time(health.failing_since),
            "failures": health.failures,
            "last_error": health.last_error,
        }

    def note_store_ok(self) -> None:
        """The store answered again after a failure noted by someone else (the
        fleet's loops, a sink runner): ``/readyz`` reports it ok."""
        self._store_write_succeeded()

    @property
    def store_failing(self) -> bool:
        """True while the last write of a poll's outcome failed."""
        return self._store_health.failing_since is not None

    async def _current_record(self, job: ActiveJob) -> JobRecord:
        record = await self.store.get_job(job.job_id)
        if record is None or record.version != job.version:
            raise StaleWriteError(job.job_id)
        return record

    def _learn(self, record: JobRecord) -> None:
        """A finished job teaches its type's duration model."""
        if record.status not in (SUCCESS, FAIL) or not record.job_type:
            return
        began, ended = parse_time(record.begin_time), parse_time(record.end_time)
        if began is None or ended is None or ended < began:
            return
        if not learnable_type(record.job_type, self._models.by_type):
            if not self._models.refused_logged:
                self._models.refused_logged = True
                log.warning(
                    "learning.type_refused",
                    job_type=bounded_text(record.job_type, 64),
                    learned=len(self._models.by_type),
                    limit=MAX_MODELS,
                )
            return
        model = self._models.by_type.setdefault(record.job_type, DurationModel())
        model.observe(ended - began)
        self._models.dirty.add(record.job_type)

    def _forget_overdue(self, job: ActiveJob | None) -> None:
        """Take a job that is no longer active out of the overdue index."""
        if job is not None:
            self._overdue.remove(job.job_type, job.account, job.began_at)

    def overdue_by_account(self) -> dict[str, int]:
        """Active jobs running longer than their type's learned p95, per account
        (accounts without any are left out); see :mod:`jobwatchd.overdue`."""
        return self._overdue.overdue(self._models.by_type, self._clock())

    def begun_by_account(self) -> dict[str, int]:
        """Active jobs that have begun (a begin time and a job type), per account:
        those :meth:`overdue_by_account` may count."""
        return dict(self._overdue.by_account)

    def duration_model(self, job_type: str) -> DurationModel | None:
        """The learned model of ``job_type``, if any."""
        return self._models.by_type.get(job_type)


def progress_of(record: JobRecord, percent: float | None) -> dict[str, Any]:
    """How far a job is: the percentage upstream reports (``percent``, None when
    its format has none) and its sub-jobs done of their total, from the
    sub-job statuses last recorded."""
    subs = record.snapshot.get("sub_jobs") if record.snapshot else None
    done = sum(1 for seen in subs.values() if is_terminal(seen[0])) if subs else 0
    total = (record.entities or {}).get("sub_jobs_total")
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        total = len(subs) if subs else None
    return {"percent": percent, "sub_jobs_done": done, "sub_jobs_total": total}
