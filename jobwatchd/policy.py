"""What one poll outcome does to a job (docs/statuses-and-events.md). Pure, no I/O.

:func:`decide` turns a job's polling state and the classified outcome of one
poll into a :class:`Decision`: the change to record (if any), when to poll
next, the new failure counters, the ``last_error`` to keep, whether the
account pauses, and the log line. :func:`decide_due` does the same for a job
that is due (its deadline may have passed), :func:`retry` for a job whose poll
crashed. The tracker carries a decision out; the randomness (the jitter of
the backoff) comes in as one uniform draw, so a decision is reproducible.

The rules:

* An answer resets the NOT_FOUND clock and the rejection count; the
  transitions it shows are recorded, after which the backoff starts over (a
  terminal status ends the job). An answer that changes nothing backs off.
* NOT_FOUND: the job ends NOT_FOUND once upstream has answered 404 for
  ``not_found_grace`` seconds since the first 404 (with a hint why a job
  registered late answers 404); until then it is polled again, no later than
  the grace period's end.
* REJECTED (a 4xx that is not 404/401/403/429, an oversized document):
  the third in a row ends the job ERROR.
* THROTTLED: the whole account pauses for ``Retry-After``, else for the
  backoff interval, and the job is polled once the pause ends.
* UNAUTHORIZED and TRANSIENT answers back off and retry, without end but the
  job's deadline.
* A job due at or past its deadline ends TIMEOUT, without a poll.

Every poll is planned no later than the job's deadline. A job that waits for
its order to be paid (PENDING_PAYMENT) is polled at the longest interval; a
started job whose type has a learned duration model follows the adaptive
schedule (:mod:`jobwatchd.learning`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal, NamedTuple, Protocol

from jobwatchd.backoff import BackoffPolicy
from jobwatchd.learning import AdaptivePolicy, DurationModel, adaptive_delay
from jobwatchd.models import (
    ERROR,
    INIT,
    NOT_FOUND,
    PENDING_PAYMENT,
    RUNNING,
    TIMEOUT,
    is_terminal,
)
from jobwatchd.outcome import Outcome, OutcomeKind, UpstreamError, not_found_error
from jobwatchd.statemachine import JobAnswer, Snapshot, Transition, conclude, observe

REJECTIONS_BEFORE_ERROR = 3
"""Rejected answers in a row that end a job ERROR."""
PAYMENT_ATTEMPT = 1 << 20
"""The backoff attempt of a job waiting for payment: far enough in to poll at ``max_interval``."""
_STARTED = frozenset({INIT, RUNNING})  # observed, not ended: the learned schedule applies
_UNREACHABLE = frozenset({OutcomeKind.TRANSIENT, OutcomeKind.UNAUTHORIZED})
_NO_MODELS: Mapping[str, DurationModel] = MappingProxyType({})

DEADLINE = "deadline"
"""Reason of a TIMEOUT: the job was due at or past its deadline."""
NOT_FOUND_GRACE = "not_found_grace"
"""Reason of a NOT_FOUND: upstream answered 404 for the whole grace period."""
REJECTED = "rejected"
"""Reason of an ERROR: the answer was rejected ``REJECTIONS_BEFORE_ERROR`` times in a row."""
_REASONS = {TIMEOUT: DEADLINE, NOT_FOUND: NOT_FOUND_GRACE, ERROR: REJECTED}


@dataclass(frozen=True, slots=True, kw_only=True)
class PollSettings:
    """The polling knobs the tracker needs (from ``[polling]``)."""

    backoff: BackoffPolicy
    initial_delay: float
    timeout: float
    not_found_grace: float
    adaptive: AdaptivePolicy | None = None


class JobState(Protocol):
    """What the policy reads of an active job (the tracker's ``ActiveJob``)."""

    @property
    def job_id(self) -> str: ...
    @property
    def account(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def deadline(self) -> float: ...
    @property
    def snapshot(self) -> Snapshot: ...
    @property
    def attempt(self) -> int: ...
    @property
    def not_found_since(self) -> float | None: ...
    @property
    def rejections(self) -> int: ...
    @property
    def job_type(self) -> str | None: ...
    @property
    def began_at(self) -> float | None: ...


# CCE's times are Go's time.String(): "2018-08-02 08:12:40.672772389 +0000 UTC"
# (notes §5b, AE schemas/CCE/src/ShowJob.json).
_GO_TIME: Final = re.compile(
    r"(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,9}))? ([+-]\d{4})(?: [A-Z]{1,5})?"
)
_MAX_TIME_LENGTH: Final = 64
_MAX_EPOCH_MS_DIGITS: Final = 15


def parse_time(value: str | None) -> float | None:
    """A vendor timestamp as unix seconds; None when absent or unreadable.

    Read: ISO 8601 (ECS ``2016-04-25T20:04:47.591Z``, RDS ``2018-08-06T10:41:14+0800``),
    without a zone taken as UTC (SFS Turbo's ``2023-07-26 09:33:58``, UTC per
    notes §9d), Go's ``time.String()`` (CCE, notes §5b) and a string of digits
    as epoch milliseconds (DCS ``"1684191545379"``, notes §8e).
    """
    if not value or len(value) > _MAX_TIME_LENGTH or not value.isascii():
        return None
    if value.isdigit():  # up to 15 digits: before the year 33658
        return int(value) / 1000 if len(value) <= _MAX_EPOCH_MS_DIGITS else None
    go = _GO_TIME.fullmatch(value)
    if go is not None:  # fromisoformat reads at most microseconds
        date, clock, fraction, offset = go.groups()
        value = f"{date}T{clock}.{(fraction or '0')[:6]:0<6}{offset}"
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


class Reschedule(NamedTuple):
    """Poll again in ``delay`` seconds, with the backoff counter at ``attempt``
    (a tuple: one is planned on every poll)."""

    delay: float
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """Transitions to record in one write, with the snapshot they lead to and
    the answer they were observed in (None for a status jobwatchd decided)."""

    transitions: tuple[Transition, ...]
    snapshot: Snapshot
    response: JobAnswer | None


class LogLine(NamedTuple):
    """A structlog event to emit: the method (level), the event name, its fields."""

    level: Literal["info", "warning", "error"]
    event: str
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """Everything the tracker does about one poll outcome (or a due job).

    ``poll`` is the next poll once ``change`` (if any) is recorded; None when
    the change ends the job. Should the write of ``change`` not be recorded
    (the store failed), ``if_not_recorded`` is the next poll instead: the
    snapshot did not advance, so the next poll sees the same transitions.
    ``concluded`` names the terminal status jobwatchd decided itself
    (TIMEOUT, NOT_FOUND, ERROR; :attr:`reason` says why); ``change`` then
    holds its transition. ``last_error`` is recorded as the job's ``last_error`` (at
    the time of the decision); None keeps the one it has. ``pause_account``
    stops polling the job's account for that many seconds. ``reachable`` says
    whether the answer shows the account's endpoint and credentials work
    (None: there was no poll). ``job_type`` and ``began_at`` are what is
    known of the job after the answer.
    """

    poll: Reschedule | None
    if_not_recorded: Reschedule | None = None
    change: Change | None = None
    concluded: str | None = None
    rejections: int
    not_found_since: float | None
    last_error: UpstreamError | None = None
    pause_account: float | None = None
    log: LogLine | None = None
    reachable: bool | None
    job_type: str | None
    began_at: float | None

    @property
    def reason(self) -> str | None:
        """Why the job was concluded: :data:`DEADLINE`, :data:`NOT_FOUND_GRACE`
        or :data:`REJECTED` (None when it was not)."""
        return None if self.concluded is None else _REASONS[self.concluded]


def poll_delay(
    status: str,
    attempt: int,
    job_type: str | None,
    began_at: float | None,
    now: float,
    settings: PollSettings,
    models: Mapping[str, DurationModel],
    rand: float,
) -> float:
    """Seconds until the next poll of a job in ``status`` after ``attempt``
    polls without change, before the deadline cap; ``rand`` is uniform in [0, 1)."""
    backoff = settings.backoff
    if status == PENDING_PAYMENT:  # waits for a person to pay: days, not seconds
        return backoff.interval(PAYMENT_ATTEMPT, rand)
    policy = settings.adaptive
    if policy is not None and status in _STARTED and job_type and began_at:
        model = models.get(job_type)
        if model is not None and model.ready:
            elapsed = max(0.0, now - began_at)
            return adaptive_delay(model, elapsed, policy, backoff, attempt=attempt, rand=rand)
    return backoff.interval(attempt, rand)


def _plan(
    job: JobState,
    status: str,
    attempt: int,
    job_type: str | None,
    began_at: float | None,
    now: float,
    settings: PollSettings,
    models: Mapping[str, DurationModel],
    rand: float,
) -> Reschedule:
    """The next poll of ``job`` were it in ``status`` after ``attempt`` polls
    (and so on), no later than its deadline."""
    delay = poll_delay(status, attempt, job_type, began_at, now, settings, models, rand)
    return Reschedule(min(delay, max(0.0, job.deadline - now)), attempt + 1)


def _backoff(
    job: JobState,
    now: float,
    settings: PollSettings,
    models: Mapping[str, DurationModel],
    rand: float,
) -> Reschedule:
    """The next poll of ``job`` as it is, no later than its deadline."""
    return _plan(
        job, job.status, job.attempt, job.job_type, job.began_at, now, settings, models, rand
    )


def retry(
    job: JobState,
    now: float,
    settings: PollSettings,
    *,
    rand: float,
    models: Mapping[str, DurationModel] = _NO_MODELS,
) -> Reschedule:
    """The next poll of a job whose poll failed before any outcome (it crashed)."""
    return _backoff(job, now, settings, models, rand)


def _conclusion(
    job: JobState,
    status: str,
    now: float,
    settings: PollSettings,
    models: Mapping[str, DurationModel],
    rand: float,
    *,
    rejections: int,
    not_found_since: float | None,
    last_error: UpstreamError | None,
    reachable: bool | None,
) -> Decision:
    transitions, snapshot = conclude(job.snapshot, status)
    fallback = _backoff(job, now, settings, models, rand)
    if job.deadline <= now:
        # A TIMEOUT the store refused: capped at the deadline, already behind us,
        # the retry would come at once, over and over, against that store.
        delay = poll_delay(
            job.status, job.attempt, job.job_type, job.began_at, now, settings, models, rand
        )
        fallback = Reschedule(delay, fallback.attempt)
    return Decision(
        poll=None,
        if_not_recorded=fallback,
        change=Change(transitions=tuple(transitions), snapshot=snapshot, response=None),
        concluded=status,
        rejections=rejections,
        not_found_since=not_found_since,
        last_error=last_error,
        reachable=reachable,
        job_type=job.job_type,
        began_at=job.began_at,
    )


def decide_due(
    job: JobState,
    now: float,
    settings: PollSettings,
    *,
    rand: float,
    models: Mapping[str, DurationModel] = _NO_MODELS,
) -> Decision | None:
    """A job is due: TIMEOUT at or past its deadline, else None (poll it)."""
    if now < job.deadline:
        return None
    return _conclusion(
        job,
        TIMEOUT,
        now,
        settings,
        models,
        rand,
        rejections=job.rejections,
        not_found_since=job.not_found_since,
        last_error=None,
        reachable=None,
    )


def decide(
    job: JobState,
    outcome: Outcome,
    now: float,
    settings: PollSettings,
    *,
    rand: float,
    models: Mapping[str, DurationModel] = _NO_MODELS,
) -> Decision:
    """What ``outcome``, the answer to a poll of ``job`` at ``now``, does to it.

    ``rand`` is a uniform draw from [0, 1) for the jitter; ``models`` the
    learned duration models by job type (for the adaptive schedule).
    """
    kind = outcome.kind
    error = outcome.error
    reachable = kind not in _UNREACHABLE
    if kind is OutcomeKind.OBSERVED:
        assert outcome.response is not None
        return _observed(job, outcome.response, error, now, settings, models, rand)
    not_found_since = job.not_found_since
    rejections = job.rejections
    fields = {
        "job_id": job.job_id,
        "account": job.account,
        "error_code": error.code if error else None,
        "error_message": error.message if error else None,
        "http_status": error.http_status if error else None,
    }
    pause: float | None = None
    if kind is OutcomeKind.NOT_FOUND:
        if not_found_since is None:
            not_found_since = now
        waited = now - not_found_since
        if waited >= settings.not_found_grace:
            return _conclusion(
                job,
                NOT_FOUND,
                now,
                settings,
                models,
                rand,
                rejections=rejections,
                not_found_since=not_found_since,
                last_error=not_found_error(error),
                reachable=reachable,
            )
        line = LogLine(
            level="info", event="poll.not_found", fields={"waited": round(waited, 3), **fields}
        )
        poll = _backoff(job, now, settings, models, rand)
        # Polled again no later than the end of the grace period.
        poll = Reschedule(
            min(poll.delay, max(0.0, settings.not_found_grace - waited)), poll.attempt
        )
    elif kind is OutcomeKind.REJECTED:
        rejections += 1
        if rejections >= REJECTIONS_BEFORE_ERROR:
            return _conclusion(
                job,
                ERROR,
                now,
                settings,
                models,
                rand,
                rejections=rejections,
                not_found_since=not_found_since,
                last_error=error,
                reachable=reachable,
            )
        line = LogLine(
            level="warning", event="poll.rejected", fields={"rejections": rejections, **fields}
        )
        poll = _backoff(job, now, settings, models, rand)
    elif kind is OutcomeKind.UNAUTHORIZED:
        line = LogLine(level="error", event="poll.unauthorized", fields=fields)
        poll = _backoff(job, now, settings, models, rand)
    elif kind is OutcomeKind.THROTTLED:
        pause = outcome.retry_after
        if pause is None:
            pause = settings.backoff.interval(job.attempt, rand)
        line = LogLine(
            level="warning", event="account.throttled", fields={"pause": round(pause, 3), **fields}
        )
        # Not capped at zero: the scheduler takes a delay in the past as "now".
        poll = Reschedule(min(pause, job.deadline - now), job.attempt + 1)
    else:
        line = LogLine(level="warning", event="poll.failed", fields=fields)
        poll = _backoff(job, now, settings, models, rand)
    return Decision(
        poll=poll,
        rejections=rejections,
        not_found_since=not_found_since,
        last_error=error,
        pause_account=pause,
        log=line,
        reachable=reachable,
        job_type=job.job_type,
        began_at=job.began_at,
    )


def _observed(
    job: JobState,
    response: JobAnswer,
    error: UpstreamError | None,
    now: float,
    settings: PollSettings,
    models: Mapping[str, DurationModel],
    rand: float,
) -> Decision:
    transitions, snapshot = observe(job.snapshot, response)
    began_at = job.began_at
    if began_at is None:
        began_at = parse_time(response.begin_time)
    job_type = job.job_type
    if job_type is None and response.job_type:
        job_type = response.job_type
    # Whatever is recorded, the delay is planned with what the answer taught.
    unchanged = _plan(job, job.status, job.attempt, job_type, began_at, now, settings, models, rand)
    if not transitions:
        return Decision(
            poll=unchanged,
            rejections=0,
            not_found_since=None,
            last_error=error,
            reachable=True,
            job_type=job_type,
            began_at=began_at,
        )
    line = None
    if response.unexpected_statuses:
        # Logged when first seen (a transition to it), not on every poll.
        arrived = {t.to_status for t in transitions} & response.unexpected_statuses
        if arrived:
            line = LogLine(
                level="warning",
                event="poll.unexpected_status",
                fields={"job_id": job.job_id, "statuses": sorted(arrived)},
            )
    poll = None
    if not is_terminal(snapshot.status):
        # Recorded: the backoff starts over, at the new status.
        poll = _plan(job, snapshot.status, 0, job_type, began_at, now, settings, models, rand)
    return Decision(
        poll=poll,
        if_not_recorded=unchanged,
        change=Change(transitions=tuple(transitions), snapshot=snapshot, response=response),
        rejections=0,
        not_found_since=None,
        last_error=error,
        log=line,
        reachable=True,
        job_type=job_type,
        began_at=began_at,
    )
