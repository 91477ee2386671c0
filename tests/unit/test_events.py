"""Tests of jobwatchd.events: CloudEvents for transitions and stable event ids.

Every payload is parsed with the CloudEvents SDK (``cloudevents`` >= 2, its ``core`` API),
which validates the required and optional context attributes of CloudEvents 1.0.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from jobwatchd.cloud.ecs import JobResponse, parse_response
from jobwatchd.events import EVENT_NAMESPACE, build_events, event_id
from jobwatchd.models import (
    ERROR,
    FAIL,
    INIT,
    JOB_TRANSITION,
    NOT_FOUND,
    RUNNING,
    SUBJOB_TRANSITION,
    SUCCESS,
    TIMEOUT,
    JobRecord,
    NewEvent,
)
from jobwatchd.statemachine import Snapshot, Transition, conclude, observe
from tests.helpers.vendor import JOB_ID, SERVER_ID, SUB_ID, VENDOR_EXAMPLE

PROJECT_ID = "0123456789abcdef0123456789abcdef"
# Exactly representable, so the millisecond rendering is exact.
OBSERVED_AT = 1461614921.5
REGISTERED_AT = 1461614800.25
OBSERVED_ISO = "2016-04-25T20:08:41.500Z"
OBSERVED_DT = dt.datetime(2016, 4, 25, 20, 8, 41, 500000, tzinfo=dt.UTC)


JOB_DATA_KEYS = {
    "job_id",
    "project_id",
    "account",
    "job_type",
    "from",
    "to",
    "terminal",
    "begin_time",
    "end_time",
    "error_code",
    "fail_reason",
    "entities",
    "sub_jobs_total",
    "sub_jobs_succeeded",
    "sub_jobs_failed",
    "progress",
    "service",
    "labels",
    "observed_at",
}
SUBJOB_DATA_KEYS = {
    "parent_job_id",
    "job_id",
    "job_type",
    "from",
    "to",
    "terminal",
    "entities",
    "error_code",
    "fail_reason",
    "begin_time",
    "end_time",
    "project_id",
    "account",
    "service",
    "labels",
    "observed_at",
}
FAST = settings(max_examples=30, deadline=None)
LIVES = settings(max_examples=40, deadline=None)


def record_for(
    response: JobResponse | None,
    *,
    job_id: str = JOB_ID,
    status: str = SUCCESS,
    account: str = "default",
    labels: dict[str, str] | None = None,
) -> JobRecord:
    """The job record as the tracker holds it after applying ``response``."""
    record = JobRecord(
        job_id=job_id,
        project_id=PROJECT_ID,
        account=account,
        status=status,
        registered_at=REGISTERED_AT,
        labels=dict(labels if labels is not None else {"team": "infra"}),
    )
    if response is not None:
        record.job_type = response.job_type
        record.begin_time = response.begin_time
        record.end_time = response.end_time
        record.error_code = response.error_code
        record.fail_reason = response.fail_reason
        record.entities = response.entities
    return record


def parse_cloud_event(payload: bytes) -> BaseCloudEvent:
    """Parse (and thereby validate) a structured-mode CloudEvent with the SDK."""
    return JSONFormat().read(CloudEvent, payload)


@pytest.fixture
def vendor_events() -> tuple[list[Transition], list[NewEvent]]:
    """The events of a fresh job first observed with the vendor's example response."""
    response = parse_response(orjson.loads(orjson.dumps(VENDOR_EXAMPLE)))
    transitions, _ = observe(Snapshot(), response)
    events = build_events(
        record_for(response), transitions, response=response, observed_at=OBSERVED_AT
    )
    return transitions, events


def test_vendor_example_events_are_valid_cloudevents(
    vendor_events: tuple[list[Transition], list[NewEvent]],
) -> None:
    transitions, events = vendor_events
    assert len(events) == len(transitions) == 2
    for transition, event in zip(transitions, events, strict=True):
        parsed = parse_cloud_event(event.payload)
        assert parsed.get_specversion() == "1.0"
        assert parsed.get_id() == event.event_id == event_id(JOB_ID, transition, REGISTERED_AT)
        assert parsed.get_source() == "/jobwatchd/default/ecs"
        assert parsed.get_type() == event.type
        assert parsed.get_time() == OBSERVED_DT
        assert parsed.get_datacontenttype() == "application/json"
        assert parsed.get_dataschema() is None
        assert event.job_id == JOB_ID
        data = parsed.get_data()
        assert isinstance(data, dict)
        assert data["observed_at"] == OBSERVED_ISO
    # Extension attributes: none.
    raw = orjson.loads(events[0].payload)
    assert set(raw) == {
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "data",
    }
    assert raw["time"] == OBSERVED_ISO


def test_vendor_example_subjob_event_comes_first_and_carries_the_sub_job(
    vendor_events: tuple[list[Transition], list[NewEvent]],
) -> None:
    _, events = vendor_events
    assert [event.type for event in events] == [SUBJOB_TRANSITION, JOB_TRANSITION]
    parsed = parse_cloud_event(events[0].payload)
    assert parsed.get_subject() == SUB_ID
    data = parsed.get_data()
    assert isinstance(data, dict)
    assert set(data) == SUBJOB_DATA_KEYS
    assert data == {
        "parent_job_id": JOB_ID,
        "job_id": SUB_ID,
        "job_type": "createSingleServer",
        "from": None,
        "to": SUCCESS,
        "terminal": True,
        "entities": {"server_id": SERVER_ID},
        "error_code": None,
        "fail_reason": None,
        "begin_time": "2016-04-25T20:04:47.591Z",
        "end_time": "2016-04-25T20:08:21.328Z",
        "project_id": PROJECT_ID,
        "account": "default",
        "service": "ecs",
        "labels": {"team": "infra"},
        "observed_at": OBSERVED_ISO,
    }


def test_vendor_example_job_event(
    vendor_events: tuple[list[Transition], list[NewEvent]],
) -> None:
    _, events = vendor_events
    parsed = parse_cloud_event(events[1].payload)
    assert parsed.get_subject() == JOB_ID
    data = parsed.get_data()
    assert isinstance(data, dict)
    assert set(data) == JOB_DATA_KEYS
    assert data == {
        "job_id": JOB_ID,
        "project_id": PROJECT_ID,
        "account": "default",
        "job_type": "createServer",
        "from": None,
        "to": SUCCESS,
        "terminal": True,
        "begin_time": "2016-04-25T20:04:34.604Z",
        "end_time": "2016-04-25T20:08:41.593Z",
        "error_code": None,
        "fail_reason": None,
        "entities": VENDOR_EXAMPLE["entities"],
        "sub_jobs_total": 1,
        "sub_jobs_succeeded": 1,
        "sub_jobs_failed": 0,
        "progress": None,
        "service": "ecs",
        "labels": {"team": "infra"},
        "observed_at": OBSERVED_ISO,
    }


def test_job_event_counts_come_from_the_response() -> None:
    response = parse_response(
        {
            "status": RUNNING,
            "entities": {
                "sub_jobs_total": 4,
                "sub_jobs": [
                    {"job_id": "a", "status": SUCCESS},
                    {"job_id": "b", "status": FAIL, "error_code": "Ecs.0005"},
                    {"job_id": "c", "status": RUNNING},
                ],
            },
        }
    )
    transitions, _ = observe(Snapshot(), response)
    events = build_events(
        record_for(response, status=RUNNING),
        transitions,
        response=response,
        observed_at=OBSERVED_AT,
    )
    assert [event.type for event in events] == [SUBJOB_TRANSITION] * 3 + [JOB_TRANSITION]
    data = orjson.loads(events[-1].payload)["data"]
    assert (data["sub_jobs_total"], data["sub_jobs_succeeded"], data["sub_jobs_failed"]) == (
        4,
        1,
        1,
    )
    assert data["terminal"] is False
    failed = orjson.loads(events[1].payload)["data"]
    assert (failed["job_id"], failed["to"], failed["terminal"], failed["error_code"]) == (
        "b",
        FAIL,
        True,
        "Ecs.0005",
    )


@pytest.mark.parametrize("status", [TIMEOUT, NOT_FOUND, ERROR])
def test_concluded_event_without_response_counts_from_stored_entities(status: str) -> None:
    response = parse_response(
        {
            "status": RUNNING,
            "entities": {
                "sub_jobs_total": 3,
                "sub_jobs": [
                    {"job_id": "a", "status": SUCCESS},
                    {"job_id": "b", "status": FAIL},
                    {"job_id": "c", "status": RUNNING},
                ],
            },
        }
    )
    _, snap = observe(Snapshot(), response)
    transitions, _ = conclude(snap, status)
    record = record_for(response, status=status)
    (event,) = build_events(record, transitions, response=None, observed_at=OBSERVED_AT)
    parsed = parse_cloud_event(event.payload)
    assert parsed.get_type() == JOB_TRANSITION
    assert parsed.get_subject() == JOB_ID
    data = parsed.get_data()
    assert isinstance(data, dict)
    assert set(data) == JOB_DATA_KEYS
    assert (data["from"], data["to"], data["terminal"]) == (RUNNING, status, True)
    assert (data["sub_jobs_total"], data["sub_jobs_succeeded"], data["sub_jobs_failed"]) == (
        3,
        1,
        1,
    )


def test_concluded_event_for_never_observed_job() -> None:
    transitions, _ = conclude(Snapshot(), NOT_FOUND)
    record = record_for(None, status=NOT_FOUND, labels={})
    (event,) = build_events(record, transitions, response=None, observed_at=OBSERVED_AT)
    data = parse_cloud_event(event.payload).get_data()
    assert isinstance(data, dict)
    assert (data["from"], data["to"], data["terminal"]) == (None, NOT_FOUND, True)
    assert data["entities"] is None
    assert (data["sub_jobs_total"], data["sub_jobs_succeeded"], data["sub_jobs_failed"]) == (
        None,
        0,
        0,
    )
    assert data["labels"] == {}


def test_source_names_the_account() -> None:
    transitions, _ = observe(Snapshot(), parse_response({"status": INIT}))
    (event,) = build_events(
        record_for(None, account="prod-eu"), transitions, response=None, observed_at=0.0
    )
    parsed = parse_cloud_event(event.payload)
    assert parsed.get_source() == "/jobwatchd/prod-eu/ecs"
    assert parsed.get_time() == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def test_build_events_of_no_transitions_is_empty() -> None:
    assert build_events(record_for(None), [], response=None, observed_at=OBSERVED_AT) == []


# --- event ids ----------------------------------------------------------------------------


def job_transition(ordinal: int, to_status: str, subject: str = "") -> Transition:
    """A bare job transition (the id only depends on subject, ordinal and target)."""
    return Transition(
        kind="job", subject=subject, ordinal=ordinal, from_status=None, to_status=to_status
    )


def test_event_id_is_a_uuid5_in_the_jobwatchd_namespace() -> None:
    transition = job_transition(0, INIT)
    identifier = event_id(JOB_ID, transition, REGISTERED_AT)
    parsed = uuid.UUID(identifier)
    assert parsed.version == 5
    assert str(parsed) == identifier
    name = orjson.dumps([JOB_ID, repr(REGISTERED_AT), "", 0, INIT]).decode()
    assert identifier == str(uuid.uuid5(EVENT_NAMESPACE, name))


def test_event_id_changes_with_the_registration() -> None:
    # A job cancelled and registered again must not reuse the ids of its first life.
    transition = job_transition(0, INIT)
    assert event_id(JOB_ID, transition, REGISTERED_AT) != event_id(
        JOB_ID, transition, REGISTERED_AT + 0.001
    )


def test_event_id_ignores_from_status_and_details() -> None:
    base = job_transition(3, RUNNING)
    assert event_id(JOB_ID, base, REGISTERED_AT) == event_id(
        JOB_ID, dataclasses.replace(base, from_status=INIT), REGISTERED_AT
    )


@pytest.mark.parametrize(
    ("job_id", "transition"),
    [
        ("other-job", job_transition(0, INIT)),
        (JOB_ID, job_transition(1, INIT)),
        (JOB_ID, job_transition(0, RUNNING)),
        (JOB_ID, job_transition(0, INIT, subject=SUB_ID)),
    ],
)
def test_event_id_changes_with_each_component(job_id: str, transition: Transition) -> None:
    assert event_id(job_id, transition, REGISTERED_AT) != event_id(
        JOB_ID, job_transition(0, INIT), REGISTERED_AT
    )


def test_event_ids_are_stable_across_redelivery_and_observation_time(
    vendor_events: tuple[list[Transition], list[NewEvent]],
) -> None:
    transitions, events = vendor_events
    again = build_events(
        record_for(None, labels={"other": "labels"}),
        transitions,
        response=None,
        observed_at=OBSERVED_AT + 3600,
    )
    assert [event.event_id for event in again] == [event.event_id for event in events]
    assert [event.payload for event in again] != [event.payload for event in events]


def test_event_ids_do_not_collide_for_subjects_or_statuses_containing_slashes() -> None:
    # Both render as "<job>/a/0/X/1/Y" before hashing.
    first = Transition(kind="subjob", subject="a", ordinal=0, from_status=None, to_status="X/1/Y")
    second = Transition(kind="subjob", subject="a/0/X", ordinal=1, from_status=INIT, to_status="Y")
    assert event_id(JOB_ID, first, REGISTERED_AT) != event_id(JOB_ID, second, REGISTERED_AT)


# --- properties over whole job lives ------------------------------------------------------

STATUSES = [INIT, RUNNING, SUCCESS, FAIL, "QUEUED"]
SUB_IDS = ["s0", "s1", "s2", "s3", "0f1e2d3c4b5a69788796a5b4c3d2e1f0"]


def life_body(status: str, subs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A vendor-shaped body."""
    return {
        "status": status,
        "entities": {
            "sub_jobs_total": len(subs),
            "sub_jobs": [{"job_id": sub_id, "status": sub_st} for sub_id, sub_st in subs],
        },
    }


@st.composite
def job_lives(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Random response bodies for one job with random sub-jobs."""
    bodies = []
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        ids = draw(st.lists(st.sampled_from(SUB_IDS), unique=True, max_size=len(SUB_IDS)))
        subs = [(sub_id, draw(st.sampled_from(STATUSES))) for sub_id in ids]
        bodies.append(life_body(draw(st.sampled_from(STATUSES)), subs))
    return bodies


@LIVES
@given(
    job_lives(),
    st.sampled_from([None, TIMEOUT, NOT_FOUND, ERROR]),
    st.floats(min_value=0, max_value=4e9, allow_nan=False),
)
def test_event_ids_never_repeat_across_a_life_and_are_reproducible(
    bodies: list[dict[str, Any]], ending: str | None, observed_at: float
) -> None:
    snap = Snapshot()
    all_transitions: list[Transition] = []
    events: list[NewEvent] = []
    for raw in bodies:
        response = parse_response(raw)
        transitions, snap = observe(snap, response)
        record = record_for(response, status=snap.status)
        events += build_events(record, transitions, response=response, observed_at=observed_at)
        all_transitions += transitions
    if ending is not None:
        transitions, snap = conclude(snap, ending)
        events += build_events(
            record_for(None, status=snap.status),
            transitions,
            response=None,
            observed_at=observed_at,
        )
        all_transitions += transitions

    ids = [event.event_id for event in events]
    assert len(events) == len(all_transitions)
    assert len(set(ids)) == len(ids), "an event id repeated within one job's life"
    # Rebuilding the same transitions (as after a crash) yields the same ids, in order.
    rebuilt = build_events(
        record_for(None), all_transitions, response=None, observed_at=observed_at + 1
    )
    assert [event.event_id for event in rebuilt] == ids
    assert ids == [event_id(JOB_ID, t, REGISTERED_AT) for t in all_transitions]
    # Another job with the very same history shares none of them.
    other = build_events(
        record_for(None, job_id="another-job"), all_transitions, response=None, observed_at=0.0
    )
    assert not {event.event_id for event in other} & set(ids)
    for transition, event in zip(all_transitions, events, strict=True):
        assert event.job_id == JOB_ID
        assert event.type == (JOB_TRANSITION if transition.kind == "job" else SUBJOB_TRANSITION)
        decoded = orjson.loads(event.payload)
        assert decoded["id"] == event.event_id
        assert decoded["subject"] == (JOB_ID if transition.kind == "job" else transition.subject)
        assert decoded["data"]["from"] == transition.from_status
        assert decoded["data"]["to"] == transition.to_status


@FAST
@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_time_and_observed_at_are_rfc3339_utc_millis(observed_at: float) -> None:
    transitions, _ = observe(Snapshot(), parse_response({"status": INIT}))
    (event,) = build_events(record_for(None), transitions, response=None, observed_at=observed_at)
    parsed = parse_cloud_event(event.payload)
    when = parsed.get_time()
    assert when is not None
    assert when.tzinfo is not None
    assert when.utcoffset() == dt.timedelta(0)
    # Truncated to the millisecond (fromtimestamp itself rounds to the microsecond).
    assert -1e-6 <= observed_at - when.timestamp() < 0.001 + 1e-6
    data = parsed.get_data()
    assert isinstance(data, dict)
    raw_time = orjson.loads(event.payload)["time"]
    assert data["observed_at"] == raw_time
    assert len(raw_time) == len("2016-04-25T20:08:41.500Z")
    assert raw_time.endswith("Z")
