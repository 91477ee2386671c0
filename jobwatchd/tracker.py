"""The tracker: registration, the in-memory view of active jobs, and what each
poll outcome does to a job (PRODUCT §2).

Only transitions (and registrations) are written to the store; a poll that
changes nothing costs no write. Every write is conditional on the version it
was computed from, and events are recorded in the same transaction as the job
update, before any sink sees them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jobwatchd.backoff import BackoffPolicy
from jobwatchd.events import build_events
from jobwatchd.logs import get_logger
from jobwatchd.models import (
    ERROR,
    NOT_FOUND,
    TIMEOUT,
    JobRecord,
    NewJob,
    StoredEvent,
    is_terminal,
    iso_time,
)
from jobwatchd.scheduler import Scheduler
from jobwatchd.statemachine import JobResponse, Snapshot, Transition, conclude, observe
from jobwatchd.store import Registration, StaleWriteError, Store
from jobwatchd.upstream import Outcome, OutcomeKind, UpstreamClient, UpstreamError

REJECTIONS_BEFORE_ERROR = 3

log = get_logger("jobwatchd.tracker")


@dataclass(frozen=True, slots=True, kw_only=True)
class PollSettings:
    """The polling knobs the tracker needs (from ``[polling]``)."""

    backoff: BackoffPolicy
    initial_delay: float
    timeout: float
    not_found_grace: float


@dataclass(slots=True)
class ActiveJob:
    """A job still being polled, with the state that lives only in memory."""

    record: JobRecord
    snapshot: Snapshot
    attempt: int = 0
    not_found_since: float | None = None
    rejections: int = 0


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
    ) -> None:
        self.store = store
        self.scheduler = scheduler
        self.clients = clients
        self.settings = settings
        self._on_events = on_events
        self._rng = rng or random.Random()
        self._clock = clock
        self.active: dict[str, ActiveJob] = {}
        self._terminal_waiters: dict[str, asyncio.Event] = {}
        self.polls_done = 0
        self.account_state: dict[str, dict[str, Any]] = {}

    # -- registration and queries -------------------------------------------------

    async def restore(self) -> int:
        """Reload every active job from the store and schedule it; returns the count."""
        records = await self.store.active_jobs()
        spread = max(self.settings.initial_delay, self.settings.backoff.min_interval)
        for record in records:
            self._activate(record, delay=self._rng.random() * spread)
        return len(records)

    def _activate(self, record: JobRecord, *, delay: float) -> None:
        self.active[record.job_id] = ActiveJob(record, Snapshot.from_json(record.snapshot))
        self.scheduler.schedule(record.job_id, record.account, delay)

    async def register(self, jobs: Sequence[NewJob]) -> list[Registration]:
        """Store ``jobs`` atomically and start polling the new ones."""
        results = await self.store.register(jobs, self._clock())
        for result in results:
            if result.created:
                self._activate(result.job, delay=self.settings.initial_delay)
                log.info(
                    "job.registered",
                    job_id=result.job.job_id,
                    project_id=result.job.project_id,
                    account=result.job.account,
                )
        return results

    async def get(self, job_id: str) -> JobRecord | None:
        """The freshest view of a job: in memory while active, else from the store."""
        active = self.active.get(job_id)
        if active is not None:
            return active.record
        return await self.store.get_job(job_id)

    async def delete(self, job_id: str) -> bool:
        """Stop tracking ``job_id``."""
        deleted = await self.store.delete_job(job_id)
        self.active.pop(job_id, None)
        self.scheduler.remove(job_id)
        self._wake_waiters(job_id)
        if deleted:
            log.info("job.deleted", job_id=job_id)
        return deleted

    async def wait_terminal(self, job_id: str, timeout: float) -> JobRecord | None:
        """Wait up to ``timeout`` seconds for the job to end; return its view."""
        if job_id in self.active:
            event = self._terminal_waiters.setdefault(job_id, asyncio.Event())
            try:
                async with asyncio.timeout(timeout):
                    await event.wait()
            except TimeoutError:
                pass
        return await self.get(job_id)

    def _wake_waiters(self, job_id: str) -> None:
        event = self._terminal_waiters.pop(job_id, None)
        if event is not None:
            event.set()

    def next_poll_at(self, job_id: str) -> float | None:
        """Wall-clock time of the job's next poll, if scheduled."""
        due_in = self.scheduler.due_in(job_id)
        return None if due_in is None else self._clock() + due_in

    def view(self, record: JobRecord) -> dict[str, Any]:
        """The job object of PRODUCT §5."""
        next_poll = self.next_poll_at(record.job_id) if not record.terminal else None
        return {
            "job_id": record.job_id,
            "project_id": record.project_id,
            "account": record.account,
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
            "polls": record.polls,
            "next_poll_at": None if next_poll is None else iso_time(next_poll),
            "last_error": record.last_error,
            "history": record.history,
        }

    # -- polling ------------------------------------------------------------------

    def reschedule_after_crash(self, job_id: str) -> None:
        """Keep a job whose poll raised unexpectedly on the schedule."""
        job = self.active.get(job_id)
        if job is not None and self.scheduler.due_in(job_id) is None:
            now = self._clock()
            self._reschedule(job, now, now + self.settings.backoff.max_interval)

    async def poll(self, job_id: str) -> None:
        """Poll ``job_id`` once and act on the outcome."""
        job = self.active.get(job_id)
        if job is None:
            return
        now = self._clock()
        deadline = job.record.registered_at + (job.record.timeout or self.settings.timeout)
        if now >= deadline:
            await self._conclude(job, TIMEOUT, now)
            return
        client = self.clients[job.record.account]
        try:
            outcome = await client.query(job.record.project_id, job.record.job_id)
        except Exception as exc:  # credentials unreadable, and the like: retry later
            outcome = Outcome(
                kind=OutcomeKind.TRANSIENT,
                error=UpstreamError(code=type(exc).__name__, message=str(exc), http_status=None),
            )
        if self.active.get(job_id) is not job:  # deleted while in flight
            return
        self.polls_done += 1
        job.record.polls += 1
        self._note_account(job.record.account, outcome)
        await self._apply(job, outcome, self._clock(), deadline)

    def _note_account(self, account: str, outcome: Outcome) -> None:
        state = self.account_state.setdefault(account, {})
        state["last_poll"] = outcome.kind.value
        state["last_poll_at"] = iso_time(self._clock())
        reachable = outcome.kind not in (OutcomeKind.TRANSIENT, OutcomeKind.UNAUTHORIZED)
        state["reachable"] = reachable
        if outcome.error is not None and not reachable:
            state["last_error"] = outcome.error.to_json(state["last_poll_at"])

    async def _apply(self, job: ActiveJob, outcome: Outcome, now: float, deadline: float) -> None:
        record = job.record
        if outcome.error is not None:
            record.last_error = outcome.error.to_json(iso_time(now))
        kind = outcome.kind
        if kind is OutcomeKind.OBSERVED:
            assert outcome.response is not None
            job.not_found_since = None
            job.rejections = 0
            await self._observed(job, outcome.response, now, deadline)
            return
        error = outcome.error
        fields = {
            "job_id": record.job_id,
            "account": record.account,
            "error_code": error.code if error else None,
            "error_message": error.message if error else None,
            "http_status": error.http_status if error else None,
        }
        if kind is OutcomeKind.NOT_FOUND:
            if job.not_found_since is None:
                job.not_found_since = now
            waited = now - job.not_found_since
            if waited >= self.settings.not_found_grace:
                await self._conclude(job, NOT_FOUND, now)
                return
            log.info("poll.not_found", waited=round(waited, 3), **fields)
            remaining = self.settings.not_found_grace - waited
            self._reschedule(job, now, deadline, cap=remaining)
        elif kind is OutcomeKind.REJECTED:
            job.rejections += 1
            if job.rejections >= REJECTIONS_BEFORE_ERROR:
                await self._conclude(job, ERROR, now)
                return
            log.warning("poll.rejected", rejections=job.rejections, **fields)
            self._reschedule(job, now, deadline)
        elif kind is OutcomeKind.UNAUTHORIZED:
            log.error("poll.unauthorized", **fields)
            self._reschedule(job, now, deadline)
        elif kind is OutcomeKind.THROTTLED:
            pause = outcome.retry_after
            if pause is None:
                pause = self.settings.backoff.interval(job.attempt, self._rng.random())
            self.scheduler.pause(record.account, pause)
            log.warning("account.throttled", pause=round(pause, 3), **fields)
            job.attempt += 1
            self.scheduler.schedule(record.job_id, record.account, min(pause, deadline - now))
        else:
            log.warning("poll.failed", **fields)
            self._reschedule(job, now, deadline)

    def _reschedule(
        self, job: ActiveJob, now: float, deadline: float, cap: float | None = None
    ) -> None:
        delay = self.settings.backoff.interval(job.attempt, self._rng.random())
        job.attempt += 1
        delay = min(delay, max(0.0, deadline - now))
        if cap is not None:
            delay = min(delay, max(0.0, cap))
        self.scheduler.schedule(job.record.job_id, job.record.account, delay)

    async def _observed(
        self, job: ActiveJob, response: JobResponse, now: float, deadline: float
    ) -> None:
        record = job.record
        if response.unexpected_statuses:
            log.warning(
                "poll.unexpected_status",
                job_id=record.job_id,
                statuses=sorted(response.unexpected_statuses),
            )
        transitions, snapshot = observe(job.snapshot, response)
        if not transitions:
            _copy_response(record, response)  # fresher details, written with the next change
            self._reschedule(job, now, deadline)
            return
        updated = dataclasses.replace(record, history=list(record.history))
        _copy_response(updated, response)
        if await self._write(job, updated, snapshot, transitions, response, now):
            job.attempt = 0
            if not is_terminal(snapshot.status):
                self._reschedule(job, now, deadline)
        else:
            self._reschedule(job, now, deadline)

    async def _conclude(self, job: ActiveJob, status: str, now: float) -> None:
        transitions, snapshot = conclude(job.snapshot, status)
        updated = dataclasses.replace(job.record, history=list(job.record.history))
        if not await self._write(job, updated, snapshot, transitions, None, now):
            self._reschedule(job, now, now + self.settings.backoff.max_interval)

    async def _write(
        self,
        job: ActiveJob,
        updated: JobRecord,
        snapshot: Snapshot,
        transitions: list[Transition],
        response: JobResponse | None,
        now: float,
    ) -> bool:
        """Persist a change with its events; True when it was recorded."""
        when = iso_time(now)
        updated.status = snapshot.status
        updated.snapshot = snapshot.to_json()
        updated.updated_at = now
        updated.history.extend(
            {"from": t.from_status, "to": t.to_status, "at": when}
            for t in transitions
            if t.kind == "job"
        )
        events = build_events(updated, transitions, response=response, observed_at=now)
        try:
            stored = await self.store.record(updated, events)
        except StaleWriteError:
            log.info("job.vanished", job_id=updated.job_id)
            self.active.pop(updated.job_id, None)
            self.scheduler.remove(updated.job_id)
            return False
        except Exception:
            log.exception("store.write_failed", job_id=updated.job_id)
            return False
        job.record = updated
        job.snapshot = snapshot
        for transition in transitions:
            if transition.kind == "job":
                log.debug(
                    "job.status",
                    job_id=updated.job_id,
                    from_status=transition.from_status,
                    to_status=transition.to_status,
                )
        if is_terminal(snapshot.status):
            self.active.pop(updated.job_id, None)
            self.scheduler.remove(updated.job_id)
            self._wake_waiters(updated.job_id)
        self._on_events(stored)
        return True


def _copy_response(record: JobRecord, response: JobResponse) -> None:
    record.job_type = response.job_type
    record.begin_time = response.begin_time
    record.end_time = response.end_time
    record.error_code = response.error_code
    record.fail_reason = response.fail_reason
    record.entities = response.entities
