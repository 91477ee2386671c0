"""CloudEvents 1.0 (structured JSON mode) for transitions, pure (docs/statuses-and-events.md).

Event ids are UUIDv5 of (job, registration, subject, ordinal, status): the same
transition observed again after a crash gets the same id, so consumers can
de-duplicate, while a job cancelled and registered again starts a new series
of ids (its registration time is part of the name).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from jobwatchd.models import JOB_TRANSITION, SUBJOB_TRANSITION, JobRecord, NewEvent, iso_time
from jobwatchd.statemachine import JobAnswer, Transition

EVENT_NAMESPACE = uuid.UUID("8d3c5f7e-4b1a-5c9e-9f0d-6a2b7c4e1f30")


def event_id(job_id: str, transition: Transition, registered_at: float) -> str:
    """The stable id of ``transition`` of the registration of ``job_id`` made at
    ``registered_at`` (the stored registration time, the same on every daemon)."""
    # A JSON array keeps the parts apart whatever characters upstream sends;
    # repr() renders the float exactly, so the name is the same after a reload.
    name = orjson.dumps(
        [job_id, repr(registered_at), transition.subject, transition.ordinal, transition.to_status]
    )
    return str(uuid.uuid5(EVENT_NAMESPACE, name.decode()))


def _job_data(
    job: JobRecord, response: JobAnswer | None, transition: Transition, observed_at: str
) -> dict[str, Any]:
    entities = job.entities
    total: int | None = None
    succeeded = failed = 0
    progress = job.progress
    if response is not None:
        progress = response.progress
        total, succeeded, failed = (
            response.sub_jobs_total,
            response.sub_jobs_succeeded,
            response.sub_jobs_failed,
        )
    elif entities:
        total = entities.get("sub_jobs_total")
        subs = entities.get("sub_jobs") or []
        succeeded = sum(
            1 for sub in subs if isinstance(sub, dict) and sub.get("status") == "SUCCESS"
        )
        failed = sum(1 for sub in subs if isinstance(sub, dict) and sub.get("status") == "FAIL")
    return {
        "job_id": job.job_id,
        "project_id": job.project_id,
        "account": job.account,
        "service": job.service,
        "job_type": job.job_type,
        "from": transition.from_status,
        "to": transition.to_status,
        "terminal": transition.terminal,
        "begin_time": job.begin_time,
        "end_time": job.end_time,
        "error_code": job.error_code,
        "fail_reason": job.fail_reason,
        "entities": entities,
        "sub_jobs_total": total,
        "sub_jobs_succeeded": succeeded,
        "sub_jobs_failed": failed,
        "progress": progress,
        "labels": job.labels,
        "observed_at": observed_at,
    }


def _subjob_data(job: JobRecord, transition: Transition, observed_at: str) -> dict[str, Any]:
    sub = transition.sub_job
    assert sub is not None, "sub-job transitions carry their sub-job"
    return {
        "parent_job_id": job.job_id,
        "job_id": sub.job_id,
        "job_type": sub.job_type,
        "from": transition.from_status,
        "to": transition.to_status,
        "terminal": transition.terminal,
        "entities": sub.entities,
        "error_code": sub.error_code,
        "fail_reason": sub.fail_reason,
        "begin_time": sub.begin_time,
        "end_time": sub.end_time,
        "project_id": job.project_id,
        "account": job.account,
        "service": job.service,
        "labels": job.labels,
        "observed_at": observed_at,
    }


def build_events(
    job: JobRecord,
    transitions: Sequence[Transition],
    *,
    response: JobAnswer | None,
    observed_at: float,
) -> list[NewEvent]:
    """CloudEvents for ``transitions``, in order; ``job`` is the record after the update."""
    when = iso_time(observed_at)
    events: list[NewEvent] = []
    for transition in transitions:
        if transition.kind == "job":
            event_type, subject = JOB_TRANSITION, job.job_id
            data = _job_data(job, response, transition, when)
        else:
            event_type, subject = SUBJOB_TRANSITION, transition.subject
            data = _subjob_data(job, transition, when)
        identifier = event_id(job.job_id, transition, job.registered_at)
        cloud_event = {
            "specversion": "1.0",
            "id": identifier,
            "source": f"/jobwatchd/{job.account}/{job.service}",
            "type": event_type,
            "subject": subject,
            "time": when,
            "datacontenttype": "application/json",
            "data": data,
        }
        events.append(
            NewEvent(
                event_id=identifier,
                job_id=job.job_id,
                type=event_type,
                payload=orjson.dumps(cloud_event),
            )
        )
    return events
