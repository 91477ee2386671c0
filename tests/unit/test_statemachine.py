"""Tests of jobwatchd.statemachine: parsing, transitions, sticky terminal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobwatchd.cloud.ecs import JobResponse, MalformedResponse, parse_response
from jobwatchd.models import (
    ERROR,
    FAIL,
    INIT,
    NOT_FOUND,
    PENDING,
    RUNNING,
    SUCCESS,
    TERMINAL_STATUSES,
    TIMEOUT,
    is_terminal,
)
from jobwatchd.statemachine import Snapshot, Transition, conclude, observe
from tests.helpers.vendor import SUB_ID, VENDOR_EXAMPLE_BYTES

UPSTREAM_TERMINAL = (SUCCESS, FAIL)
OWN_TERMINAL = (TIMEOUT, NOT_FOUND, ERROR)
FAST = settings(max_examples=30, deadline=None)
LIVES = settings(max_examples=50, deadline=None)


@pytest.fixture
def vendor_example() -> dict[str, Any]:
    """A fresh copy of the vendor's example body, decoded."""
    body: dict[str, Any] = orjson.loads(VENDOR_EXAMPLE_BYTES)
    return body


def body(status: str, subs: Sequence[tuple[str, str]] = (), **extra: Any) -> dict[str, Any]:
    """A job status body in the vendor's shape with the given sub-job statuses."""
    doc: dict[str, Any] = {"status": status, **extra}
    if subs:
        doc["entities"] = {
            "sub_jobs_total": len(subs),
            "sub_jobs": [
                {"job_id": sub_id, "status": sub_status, "entities": {"server_id": f"srv-{sub_id}"}}
                for sub_id, sub_status in subs
            ],
        }
    return doc


def response(status: str, subs: Sequence[tuple[str, str]] = ()) -> JobResponse:
    """``body`` parsed."""
    return parse_response(body(status, subs))


def chain(transitions: Sequence[Transition]) -> list[tuple[str, str, str | None, str, int]]:
    """A compact view of transitions: (kind, subject, from, to, ordinal)."""
    return [(t.kind, t.subject, t.from_status, t.to_status, t.ordinal) for t in transitions]


# --- parse_response -----------------------------------------------------------------------


def test_parse_vendor_example(vendor_example: dict[str, Any]) -> None:
    parsed = parse_response(vendor_example)
    assert parsed.status == SUCCESS
    assert parsed.job_type == "createServer"
    assert parsed.begin_time == "2016-04-25T20:04:34.604Z"
    assert parsed.end_time == "2016-04-25T20:08:41.593Z"
    assert parsed.error_code is None
    assert parsed.fail_reason is None
    assert parsed.code is None
    assert parsed.message is None
    assert parsed.sub_jobs_total == 1
    assert parsed.sub_jobs_succeeded == 1
    assert parsed.sub_jobs_failed == 0
    assert parsed.unexpected_statuses == frozenset()
    assert parsed.entities == vendor_example["entities"]
    (sub,) = parsed.sub_jobs
    assert (sub.job_id, sub.status) == (SUB_ID, SUCCESS)
    assert sub.job_type == "createSingleServer"
    assert sub.entities == {"server_id": "bae51750-0089-41a1-9b18-5c777978ff6d"}
    assert (sub.error_code, sub.fail_reason) == (None, None)
    assert sub.begin_time == "2016-04-25T20:04:47.591Z"
    assert sub.end_time == "2016-04-25T20:08:21.328Z"


def test_parse_keeps_the_body_instead_of_copying_it(vendor_example: dict[str, Any]) -> None:
    # The poller hands over a fresh decode per answer, so parsing needs no copy.
    parsed = parse_response(vendor_example)
    assert parsed.body is vendor_example
    assert parsed.entities is vendor_example["entities"]
    assert parsed.sub_jobs[0].element is vendor_example["entities"]["sub_jobs"][0]


def test_parse_tolerates_non_dict_entities() -> None:
    parsed = parse_response({"status": RUNNING, "entities": [1, 2]})
    assert (parsed.entities, parsed.sub_jobs, parsed.sub_jobs_total) == ({}, (), None)
    element = {"job_id": "a", "status": INIT, "entities": 3}
    sub = parse_response({"status": RUNNING, "entities": {"sub_jobs": [element]}}).sub_jobs[0]
    assert sub.entities == {}


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        [{"status": "SUCCESS"}],
        "SUCCESS",
        42,
        True,
        {},
        {"status": None},
        {"status": ""},
        {"status": 1},
        {"status": ["SUCCESS"]},
        {"entities": {"sub_jobs": []}},
        {"error": {"code": "Common.0011", "message": "Invalid job ID"}},
    ],
    ids=repr,
)
def test_parse_rejects_bodies_without_a_usable_status(doc: object) -> None:
    with pytest.raises(MalformedResponse):
        parse_response(doc)


def test_malformed_response_is_a_value_error() -> None:
    assert issubclass(MalformedResponse, ValueError)


@pytest.mark.parametrize("status", [INIT, RUNNING, SUCCESS, FAIL, "QUEUED", "weird status"])
def test_parse_passes_any_status_string_through(status: str) -> None:
    assert parse_response({"status": status}).status == status


def test_parse_skips_unusable_sub_jobs() -> None:
    doc = {
        "status": RUNNING,
        "entities": {
            "sub_jobs": [
                {"job_id": "a", "status": RUNNING},
                {"job_id": "", "status": RUNNING},
                {"job_id": "b", "status": ""},
                {"status": RUNNING},
                {"job_id": "c"},
                {"job_id": 7, "status": RUNNING},
                {"job_id": "d", "status": None},
                "not-an-object",
                None,
                {"job_id": "e", "status": FAIL, "entities": None},
            ]
        },
    }
    parsed = parse_response(doc)
    assert [(sub.job_id, sub.status) for sub in parsed.sub_jobs] == [("a", RUNNING), ("e", FAIL)]
    assert parsed.sub_jobs[1].entities == {}
    # No sub_jobs_total upstream: the count of usable sub-jobs.
    assert parsed.sub_jobs_total == 2
    assert parsed.sub_jobs_failed == 1


@pytest.mark.parametrize(
    ("entities", "expected_total", "expected_subs"),
    [
        (None, None, 0),
        ("oops", None, 0),
        ([], None, 0),
        ({}, None, 0),
        ({"sub_jobs": "nope"}, None, 0),
        ({"sub_jobs": {"job_id": "a", "status": "INIT"}}, None, 0),
        ({"sub_jobs_total": 0, "sub_jobs": []}, 0, 0),
        ({"sub_jobs_total": 5, "sub_jobs": []}, 5, 0),
        ({"sub_jobs_total": True, "sub_jobs": [{"job_id": "a", "status": "INIT"}]}, 1, 1),
        ({"sub_jobs_total": "1", "sub_jobs": [{"job_id": "a", "status": "INIT"}]}, 1, 1),
        ({"sub_jobs_total": 1.0}, None, 0),
        (
            {"sub_jobs": [{"job_id": "a", "status": "INIT"}, {"job_id": "b", "status": "INIT"}]},
            2,
            2,
        ),
    ],
    ids=repr,
)
def test_parse_entities_shapes(
    entities: object, expected_total: int | None, expected_subs: int
) -> None:
    parsed = parse_response({"status": RUNNING, "entities": entities})
    assert parsed.sub_jobs_total == expected_total
    assert len(parsed.sub_jobs) == expected_subs
    assert isinstance(parsed.entities, dict)


def test_parse_ignores_non_string_optional_fields() -> None:
    parsed = parse_response(
        {
            "status": FAIL,
            "job_type": 3,
            "begin_time": 1461614674,
            "end_time": None,
            "error_code": {"x": 1},
            "fail_reason": ["x"],
            "code": 400,
            "message": None,
        }
    )
    assert parsed.status == FAIL
    assert (parsed.job_type, parsed.begin_time, parsed.end_time) == (None, None, None)
    assert (parsed.error_code, parsed.fail_reason, parsed.code, parsed.message) == (
        None,
        None,
        None,
        None,
    )


def test_parse_keeps_failure_details_and_top_level_error() -> None:
    parsed = parse_response(
        {
            "status": FAIL,
            "error_code": "Ecs.0005",
            "fail_reason": "quota exceeded",
            "code": "Ecs.0000",
            "message": "partial failure",
            "entities": {
                "sub_jobs": [
                    {
                        "job_id": "s1",
                        "status": FAIL,
                        "error_code": "Ecs.0005",
                        "fail_reason": "quota",
                        "entities": {"errorcode_message": "quota exceeded"},
                    }
                ]
            },
        }
    )
    assert (parsed.error_code, parsed.fail_reason) == ("Ecs.0005", "quota exceeded")
    assert (parsed.code, parsed.message) == ("Ecs.0000", "partial failure")
    sub = parsed.sub_jobs[0]
    assert (sub.error_code, sub.fail_reason) == ("Ecs.0005", "quota")
    assert sub.entities == {"errorcode_message": "quota exceeded"}


def test_unexpected_statuses_cover_job_and_sub_jobs() -> None:
    parsed = response("QUEUED", [("a", INIT), ("b", "PAUSED"), ("c", SUCCESS)])
    assert parsed.unexpected_statuses == frozenset({"QUEUED", "PAUSED"})
    assert response(RUNNING, [("a", INIT), ("b", FAIL)]).unexpected_statuses == frozenset()


def test_sub_job_counters() -> None:
    parsed = response(RUNNING, [("a", SUCCESS), ("b", SUCCESS), ("c", FAIL), ("d", RUNNING)])
    assert parsed.sub_jobs_succeeded == 2
    assert parsed.sub_jobs_failed == 1
    assert parsed.sub_jobs_total == 4


# --- observe ------------------------------------------------------------------------------


def test_observe_vendor_example_from_fresh_snapshot(vendor_example: dict[str, Any]) -> None:
    transitions, snapshot = observe(Snapshot(), parse_response(vendor_example))
    assert chain(transitions) == [
        ("subjob", SUB_ID, None, SUCCESS, 0),
        ("job", "", None, SUCCESS, 0),
    ]
    assert transitions[0].sub_job is not None
    assert transitions[0].sub_job.job_id == SUB_ID
    assert transitions[1].sub_job is None
    assert all(t.terminal for t in transitions)
    assert snapshot == Snapshot(status=SUCCESS, transitions=1, sub_jobs={SUB_ID: (SUCCESS, 1)})


def test_fresh_snapshot_is_pending() -> None:
    fresh = Snapshot()
    assert (fresh.status, fresh.transitions, dict(fresh.sub_jobs)) == (PENDING, 0, {})


def test_observe_full_life_of_a_job() -> None:
    snap = Snapshot()
    steps = [
        (response(INIT), [("job", "", None, INIT, 0)]),
        (
            response(RUNNING, [("a", INIT), ("b", INIT)]),
            [
                ("subjob", "a", None, INIT, 0),
                ("subjob", "b", None, INIT, 0),
                ("job", "", INIT, RUNNING, 1),
            ],
        ),
        (response(RUNNING, [("a", RUNNING), ("b", INIT)]), [("subjob", "a", INIT, RUNNING, 1)]),
        (response(RUNNING, [("a", RUNNING), ("b", INIT)]), []),
        (
            response(RUNNING, [("a", SUCCESS), ("b", RUNNING)]),
            [("subjob", "a", RUNNING, SUCCESS, 2), ("subjob", "b", INIT, RUNNING, 1)],
        ),
        (
            response(FAIL, [("a", SUCCESS), ("b", FAIL)]),
            [("subjob", "b", RUNNING, FAIL, 2), ("job", "", RUNNING, FAIL, 2)],
        ),
        (response(SUCCESS, [("a", RUNNING), ("b", SUCCESS)]), []),
    ]
    for resp, expected in steps:
        transitions, snap = observe(snap, resp)
        assert chain(transitions) == expected
    assert snap == Snapshot(
        status=FAIL, transitions=3, sub_jobs={"a": (SUCCESS, 3), "b": (FAIL, 3)}
    )


def test_observe_replaying_the_same_response_is_a_no_op() -> None:
    resp = response(RUNNING, [("a", RUNNING)])
    first, snap = observe(Snapshot(), resp)
    assert len(first) == 2
    again, snap_again = observe(snap, resp)
    assert again == []
    assert snap_again == snap


def test_observe_first_observation_always_emits_even_if_status_equals_snapshot() -> None:
    # A snapshot restored with a status but no transitions is a job never observed.
    transitions, snap = observe(Snapshot(status=RUNNING), response(RUNNING))
    assert chain(transitions) == [("job", "", None, RUNNING, 0)]
    assert snap.transitions == 1


def test_observe_unexpected_status_is_passed_through_and_not_terminal() -> None:
    transitions, snap = observe(Snapshot(), response("QUEUED"))
    assert chain(transitions) == [("job", "", None, "QUEUED", 0)]
    assert not transitions[0].terminal
    transitions, snap = observe(snap, response(RUNNING))
    assert chain(transitions) == [("job", "", "QUEUED", RUNNING, 1)]


def test_observe_sub_job_that_disappears_keeps_its_state() -> None:
    _, snap = observe(Snapshot(), response(RUNNING, [("a", RUNNING)]))
    transitions, snap = observe(snap, response(RUNNING))
    assert transitions == []
    assert snap.sub_jobs == {"a": (RUNNING, 1)}
    transitions, snap = observe(snap, response(RUNNING, [("a", RUNNING)]))
    assert transitions == []
    transitions, _ = observe(snap, response(RUNNING, [("a", SUCCESS)]))
    assert chain(transitions) == [("subjob", "a", RUNNING, SUCCESS, 1)]


def test_observe_status_can_go_back_and_ordinals_keep_counting() -> None:
    snap = Snapshot()
    seen: list[tuple[str, str, str | None, str, int]] = []
    for status in (INIT, RUNNING, INIT, RUNNING):
        transitions, snap = observe(snap, response(status))
        seen += chain(transitions)
    assert seen == [
        ("job", "", None, INIT, 0),
        ("job", "", INIT, RUNNING, 1),
        ("job", "", RUNNING, INIT, 2),
        ("job", "", INIT, RUNNING, 3),
    ]


def test_observe_does_not_mutate_the_previous_snapshot() -> None:
    _, snap = observe(Snapshot(), response(RUNNING, [("a", INIT)]))
    before = snap.to_json()
    observe(snap, response(SUCCESS, [("a", SUCCESS), ("b", SUCCESS)]))
    assert snap.to_json() == before


LATER = [INIT, RUNNING, SUCCESS, FAIL, TIMEOUT, "QUEUED"]


@pytest.mark.parametrize("terminal", UPSTREAM_TERMINAL)
def test_observe_upstream_terminal_is_sticky(terminal: str) -> None:
    _, snap = observe(Snapshot(), response(RUNNING, [("a", RUNNING)]))
    transitions, snap = observe(snap, response(terminal, [("a", terminal)]))
    assert transitions[-1].to_status == terminal
    assert transitions[-1].terminal
    for later in LATER:
        after, same = observe(snap, response(later, [("a", later), ("new", INIT)]))
        assert after == [], later
        assert same is snap


@pytest.mark.parametrize("terminal", OWN_TERMINAL)
def test_observe_after_conclude_is_sticky(terminal: str) -> None:
    _, snap = observe(Snapshot(), response(RUNNING, [("a", RUNNING)]))
    _, snap = conclude(snap, terminal)
    assert snap.status == terminal
    for later in LATER:
        after, snap_after = observe(snap, response(later, [("a", later)]))
        assert after == [], later
        assert snap_after == snap


@pytest.mark.parametrize("terminal", [SUCCESS, FAIL])
def test_sub_job_terminal_is_sticky(terminal: str) -> None:
    _, snap = observe(Snapshot(), response(RUNNING, [("a", RUNNING)]))
    transitions, snap = observe(snap, response(RUNNING, [("a", terminal)]))
    assert chain(transitions) == [("subjob", "a", RUNNING, terminal, 1)]
    for later in LATER:
        transitions, snap_after = observe(snap, response(RUNNING, [("a", later)]))
        assert transitions == [], later
        assert snap_after.sub_jobs["a"] == (terminal, 2)


def test_sub_job_transitions_precede_the_parent_in_one_observe() -> None:
    subs = [(f"s{i}", SUCCESS) for i in range(5)]
    transitions, _ = observe(Snapshot(), response(SUCCESS, subs))
    kinds = [t.kind for t in transitions]
    assert kinds == ["subjob"] * 5 + ["job"]
    assert [t.subject for t in transitions[:5]] == [sub_id for sub_id, _ in subs]


# --- conclude -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", OWN_TERMINAL)
def test_conclude_unobserved_job(status: str) -> None:
    transitions, snap = conclude(Snapshot(), status)
    assert chain(transitions) == [("job", "", None, status, 0)]
    assert transitions[0].terminal
    assert snap == Snapshot(status=status, transitions=1, sub_jobs={})


@pytest.mark.parametrize("status", OWN_TERMINAL)
def test_conclude_observed_job_continues_ordinals_and_keeps_sub_jobs(status: str) -> None:
    snap = Snapshot()
    for resp in (response(INIT), response(RUNNING, [("a", RUNNING)])):
        _, snap = observe(snap, resp)
    transitions, concluded = conclude(snap, status)
    assert chain(transitions) == [("job", "", RUNNING, status, 2)]
    assert concluded.status == status
    assert concluded.transitions == 3
    assert concluded.sub_jobs == {"a": (RUNNING, 1)}


@pytest.mark.parametrize("first", sorted(TERMINAL_STATUSES))
def test_conclude_on_terminal_is_a_no_op(first: str) -> None:
    if first in OWN_TERMINAL:
        _, snap = conclude(Snapshot(), first)
    else:
        _, snap = observe(Snapshot(), response(first))
    for second in OWN_TERMINAL:
        transitions, after = conclude(snap, second)
        assert transitions == []
        assert after is snap


# --- Snapshot JSON ------------------------------------------------------------------------


def test_snapshot_to_json_shape() -> None:
    snap = Snapshot(status=RUNNING, transitions=2, sub_jobs={"a": (SUCCESS, 3), "b": (INIT, 1)})
    assert snap.to_json() == {
        "status": RUNNING,
        "transitions": 2,
        "sub_jobs": {"a": [SUCCESS, 3], "b": [INIT, 1]},
    }


@pytest.mark.parametrize("data", [{}, {"sub_jobs": None}, {"status": PENDING}])
def test_snapshot_from_empty_json_is_fresh(data: dict[str, Any]) -> None:
    assert Snapshot.from_json(data) == Snapshot()


def test_snapshot_survives_a_store_round_trip_mid_life() -> None:
    snap = Snapshot()
    for resp in (response(INIT), response(RUNNING, [("a", INIT), ("b", RUNNING)])):
        _, snap = observe(snap, resp)
    restored = Snapshot.from_json(orjson.loads(orjson.dumps(snap.to_json())))
    assert restored == snap
    nxt = response(SUCCESS, [("a", SUCCESS), ("b", SUCCESS)])
    assert observe(restored, nxt) == observe(snap, nxt)


snapshots = st.builds(
    Snapshot,
    status=st.sampled_from([PENDING, INIT, RUNNING, SUCCESS, FAIL, TIMEOUT, "QUEUED"]),
    transitions=st.integers(min_value=0, max_value=10**6),
    sub_jobs=st.dictionaries(
        st.text(min_size=1, max_size=20),
        st.tuples(st.sampled_from([INIT, RUNNING, SUCCESS, FAIL]), st.integers(0, 10**6)),
        max_size=8,
    ),
)


@LIVES
@given(snapshots)
def test_snapshot_json_round_trip_property(snap: Snapshot) -> None:
    encoded = orjson.dumps(snap.to_json())
    restored = Snapshot.from_json(orjson.loads(encoded))
    assert restored == snap
    assert restored.to_json() == snap.to_json()


# --- properties over whole job lives ------------------------------------------------------

STATUSES = [INIT, RUNNING, SUCCESS, FAIL, "QUEUED"]
SUB_IDS = ["s0", "s1", "s2", "s3", "0f1e2d3c4b5a69788796a5b4c3d2e1f0"]

Step = tuple[str, list[tuple[str, str]]]


@st.composite
def job_lives(draw: st.DrawFn) -> list[Step]:
    """A random sequence of responses for one job: a job status and a subset of sub-jobs."""
    steps: list[Step] = []
    for _ in range(draw(st.integers(min_value=1, max_value=10))):
        status = draw(st.sampled_from(STATUSES))
        ids = draw(st.lists(st.sampled_from(SUB_IDS), unique=True, max_size=len(SUB_IDS)))
        steps.append((status, [(sub_id, draw(st.sampled_from(STATUSES))) for sub_id in ids]))
    return steps


@LIVES
@given(job_lives(), st.sampled_from([None, *OWN_TERMINAL]))
def test_life_invariants(life: list[Step], ending: str | None) -> None:
    snap = Snapshot()
    last_to: dict[tuple[str, str], str] = {}
    ordinals: dict[tuple[str, str], int] = {}
    for index, (status, subs) in enumerate(life):
        was_terminal = is_terminal(snap.status)
        terminal_subs = {sub_id for sub_id, (st_, _) in snap.sub_jobs.items() if is_terminal(st_)}
        resp = response(status, subs)
        transitions, new_snap = observe(snap, resp)

        if was_terminal:  # terminal is sticky for the job
            assert transitions == []
            assert new_snap == snap
        # Sub-job transitions precede the parent's; at most one job transition.
        kinds = [t.kind for t in transitions]
        assert kinds == sorted(kinds, key=lambda kind: kind == "job")
        assert kinds.count("job") <= 1
        # The first observation has from=None and always emits.
        if index == 0:
            assert kinds[-1:] == ["job"]
            assert transitions[-1].from_status is None
        for t in transitions:
            key = (t.kind, t.subject)
            # Nothing after a terminal sub-job.
            if t.kind == "subjob":
                assert t.subject not in terminal_subs
                assert t.sub_job is not None
                assert t.sub_job.job_id == t.subject
                assert t.subject in dict(subs)
            else:
                assert t.subject == ""
                assert t.to_status == status
            assert t.from_status == last_to.get(key)
            assert t.from_status != t.to_status
            assert t.ordinal == ordinals.get(key, 0)
            assert t.terminal == is_terminal(t.to_status)
            last_to[key] = t.to_status
            ordinals[key] = t.ordinal + 1
        # The snapshot records what was seen and counts per subject.
        assert new_snap.transitions == ordinals.get(("job", ""), 0)
        for sub_id, (sub_status, count) in new_snap.sub_jobs.items():
            assert (sub_status, count) == (
                last_to[("subjob", sub_id)],
                ordinals[("subjob", sub_id)],
            )
        # Replaying the same response yields nothing and changes nothing.
        replay, replay_snap = observe(new_snap, resp)
        assert replay == []
        assert replay_snap == new_snap
        # The stored form carries everything the next diff needs.
        assert Snapshot.from_json(orjson.loads(orjson.dumps(new_snap.to_json()))) == new_snap
        snap = new_snap

    if ending is not None:
        transitions, final = conclude(snap, ending)
        if is_terminal(snap.status):
            assert transitions == []
            assert final == snap
        else:
            assert chain(transitions) == [
                ("job", "", snap.status, ending, snap.transitions),
            ]
            assert final.status == ending
            assert observe(final, response(RUNNING, [(SUB_IDS[0], RUNNING)])) == ([], final)
