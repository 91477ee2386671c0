"""Tests of the pure parts of talking to the cloud: classify, parse_retry_after,
vendor_error (statuses and faults: docs/statuses-and-events.md)."""

from __future__ import annotations

import email.utils
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from jobwatchd.cloud.client import NOT_FOUND_CODES, THROTTLE_CODES, classify
from jobwatchd.cloud.ecs import MalformedResponse, parse_response
from jobwatchd.cloud.errors import vendor_error
from jobwatchd.net import parse_retry_after
from jobwatchd.outcome import Outcome, OutcomeKind, UpstreamError
from tests.helpers.vendor import JOB_ID, VENDOR_EXAMPLE

FAST = settings(max_examples=30, deadline=None)
SLOW = settings(max_examples=30, deadline=None)
NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z

# The three vendor error body shapes.
NESTED_NOT_FOUND = {"error": {"code": "Common.0011", "message": "Invalid job ID"}}
GATEWAY_THROTTLED = {
    "error_code": "APIGW.0308",
    "error_msg": "The request is throttled.",
    "request_id": "4f1b2c3d",
}
TOP_LEVEL_THROTTLED = {"code": "Common.1503", "message": "Request throttled"}


def dumps(body: object) -> bytes:
    """JSON-encode a body."""
    return orjson.dumps(body)


def run(status: int, body: object | bytes, headers: Mapping[str, str] | None = None) -> Outcome:
    """``classify`` with a JSON body (bytes are passed through untouched)."""
    raw = body if isinstance(body, bytes) else dumps(body)
    return classify(status, headers or {}, raw, now=NOW)


# --- classify: 200 ------------------------------------------------------------------------


def test_vendor_example_is_observed_without_error() -> None:
    outcome = run(200, VENDOR_EXAMPLE)
    assert outcome.kind is OutcomeKind.OBSERVED
    assert outcome.response == parse_response(VENDOR_EXAMPLE)
    assert outcome.error is None
    assert outcome.retry_after is None


@pytest.mark.parametrize("status", ["INIT", "RUNNING", "SUCCESS", "FAIL", "QUEUED"])
def test_any_status_is_observed(status: str) -> None:
    outcome = run(200, {"status": status, "entities": {}})
    assert outcome.kind is OutcomeKind.OBSERVED
    assert outcome.response is not None
    assert outcome.response.status == status
    assert outcome.error is None


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"<html>502 Bad Gateway</html>",
        b'{"status": "SUCCESS"',
        b"\xff\xfe\x00",
        b"null",
    ],
    ids=repr,
)
def test_200_with_malformed_json_is_transient(raw: bytes) -> None:
    outcome = run(200, raw)
    assert outcome.kind is OutcomeKind.TRANSIENT
    assert outcome.response is None
    assert outcome.error is not None
    assert outcome.error.http_status == 200
    assert outcome.error.message == "malformed JSON body"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "response body is not a JSON object"),
        ([{"status": "SUCCESS"}], "response body is not a JSON object"),
        ("SUCCESS", "response body is not a JSON object"),
        (42, "response body is not a JSON object"),
        ({}, "response has no status"),
        ({"status": ""}, "response has no status"),
        ({"status": None, "entities": {}}, "response has no status"),
        ({"status": 3}, "response has no status"),
        ({"job_id": JOB_ID, "entities": {"sub_jobs": []}}, "response has no status"),
    ],
    ids=repr,
)
def test_200_without_usable_status_is_transient(body: object, message: str) -> None:
    outcome = run(200, body)
    assert outcome.kind is OutcomeKind.TRANSIENT
    assert outcome.response is None
    assert outcome.error == UpstreamError(code=None, message=message, http_status=200)


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        ({"code": "Ecs.0001", "message": "partial"}, "Ecs.0001", "partial"),
        ({"code": "Ecs.0001"}, "Ecs.0001", ""),
        ({"message": "something odd"}, None, "something odd"),
        ({"error": {"code": "Ecs.0002", "message": "nested"}}, "Ecs.0002", "nested"),
    ],
)
def test_200_with_error_and_status_is_observed_with_error_kept(
    extra: dict[str, Any], code: str | None, message: str
) -> None:
    outcome = run(200, {**VENDOR_EXAMPLE, "status": "RUNNING", **extra})
    assert outcome.kind is OutcomeKind.OBSERVED
    assert outcome.response is not None
    assert outcome.response.status == "RUNNING"
    assert outcome.error == UpstreamError(code=code, message=message, http_status=200)


def test_200_with_error_but_no_status_is_transient_with_the_vendor_error() -> None:
    outcome = run(200, {"code": "Ecs.0001", "message": "boom"})
    assert outcome.kind is OutcomeKind.TRANSIENT
    assert outcome.error == UpstreamError(code="Ecs.0001", message="boom", http_status=200)


def test_failed_job_error_code_is_not_an_upstream_error() -> None:
    body = {
        **VENDOR_EXAMPLE,
        "status": "FAIL",
        "error_code": "Ecs.0005",
        "fail_reason": "Insufficient quota",
    }
    outcome = run(200, body)
    assert outcome.kind is OutcomeKind.OBSERVED
    assert outcome.response is not None
    assert outcome.response.error_code == "Ecs.0005"
    assert outcome.error is None


# --- classify: throttling -----------------------------------------------------------------


def test_429_with_delta_seconds() -> None:
    outcome = run(429, GATEWAY_THROTTLED, {"Retry-After": "7"})
    assert outcome.kind is OutcomeKind.THROTTLED
    assert outcome.retry_after == 7.0
    assert outcome.error == UpstreamError(
        code="APIGW.0308", message="The request is throttled.", http_status=429
    )


def test_429_with_http_date() -> None:
    headers = {"Retry-After": email.utils.formatdate(NOW + 42, usegmt=True)}
    outcome = run(429, b"", headers)
    assert outcome.kind is OutcomeKind.THROTTLED
    assert outcome.retry_after == 42.0
    assert outcome.error == UpstreamError(code=None, message="throttled", http_status=429)


def test_429_header_lookup_is_case_insensitive_with_aiohttp_headers() -> None:
    headers: CIMultiDict[str] = CIMultiDict({"retry-after": "3"})
    assert run(429, b"", headers).retry_after == 3.0


@pytest.mark.parametrize("headers", [{}, {"Retry-After": ""}, {"Retry-After": "soon"}])
def test_429_without_usable_retry_after(headers: dict[str, str]) -> None:
    outcome = run(429, b"Too Many Requests", headers)
    assert outcome.kind is OutcomeKind.THROTTLED
    assert outcome.retry_after is None


@pytest.mark.parametrize("code", sorted(THROTTLE_CODES))
@pytest.mark.parametrize("shape", ["nested", "gateway", "top-level"])
def test_throttle_codes_throttle_whatever_the_status(code: str, shape: str) -> None:
    bodies: dict[str, dict[str, Any]] = {
        "nested": {"error": {"code": code, "message": "slow down"}},
        "gateway": {"error_code": code, "error_msg": "slow down"},
        "top-level": {"code": code, "message": "slow down", "status": "RUNNING"},
    }
    body = bodies[shape]
    for status in (400, 403, 429, 500, 503, 200):
        outcome = run(status, body, {"Retry-After": "2"})
        assert outcome.kind is OutcomeKind.THROTTLED, status
        assert outcome.retry_after == 2.0
        assert outcome.error == UpstreamError(code=code, message="slow down", http_status=status)


# --- classify: not found, rejected, unauthorized, transient -------------------------------


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (404, b"", None, "job not found"),
        (404, NESTED_NOT_FOUND, "Common.0011", "Invalid job ID"),
        (400, NESTED_NOT_FOUND, "Common.0011", "Invalid job ID"),
        (
            400,
            {"code": "Common.0011", "message": "Invalid job ID"},
            "Common.0011",
            "Invalid job ID",
        ),
        (
            400,
            {"error_code": "Common.0011", "error_msg": "Invalid job ID"},
            "Common.0011",
            "Invalid job ID",
        ),
        (404, {"error": {"code": "Ecs.0114", "message": "x"}}, "Ecs.0114", "x"),
    ],
    ids=repr,
)
def test_not_found(status: int, body: object, code: str | None, message: str) -> None:
    outcome = run(status, body)
    assert outcome.kind is OutcomeKind.NOT_FOUND
    assert outcome.error == UpstreamError(code=code, message=message, http_status=status)
    assert outcome.response is None


def test_not_found_code_only_counts_on_400() -> None:
    assert {"Common.0011"} == NOT_FOUND_CODES
    assert run(422, NESTED_NOT_FOUND).kind is OutcomeKind.REJECTED
    assert run(500, NESTED_NOT_FOUND).kind is OutcomeKind.TRANSIENT


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, b""),
        (400, {"error": {"code": "Ecs.0005", "message": "bad request"}}),
        (400, {"error_code": "APIGW.0101", "error_msg": "api not found"}),
        (422, {"code": "Ecs.0100", "message": "unprocessable"}),
        (405, b""),
        (409, b""),
        (410, b""),
        (413, b""),
    ],
    ids=repr,
)
def test_rejected(status: int, body: object) -> None:
    outcome = run(status, body)
    assert outcome.kind is OutcomeKind.REJECTED
    assert outcome.error is not None
    assert outcome.error.http_status == status
    assert outcome.error.message


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (b"", None, "not authorized"),
        (
            {"error_code": "APIGW.0301", "error_msg": "Incorrect IAM authentication information"},
            "APIGW.0301",
            "Incorrect IAM authentication information",
        ),
        ({"error": {"code": "Ecs.0003", "message": "forbidden"}}, "Ecs.0003", "forbidden"),
    ],
    ids=repr,
)
def test_unauthorized(status: int, body: object, code: str | None, message: str) -> None:
    outcome = run(status, body)
    assert outcome.kind is OutcomeKind.UNAUTHORIZED
    assert outcome.error == UpstreamError(code=code, message=message, http_status=status)


@pytest.mark.parametrize("status", [408, 500, 501, 502, 503, 504, 599, 204, 100])
def test_transient(status: int) -> None:
    outcome = run(status, b"<html>oops</html>")
    assert outcome.kind is OutcomeKind.TRANSIENT
    assert outcome.error == UpstreamError(code=None, message=f"HTTP {status}", http_status=status)
    assert outcome.response is None


def test_transient_keeps_the_vendor_message() -> None:
    outcome = run(503, {"error": {"code": "Ecs.0500", "message": "internal"}})
    assert outcome.kind is OutcomeKind.TRANSIENT
    assert outcome.error == UpstreamError(code="Ecs.0500", message="internal", http_status=503)


@FAST
@given(st.integers(min_value=100, max_value=599), st.binary(max_size=64))
def test_classify_never_raises_and_is_consistent(status: int, raw: bytes) -> None:
    outcome = classify(status, {}, raw, now=NOW)
    assert (outcome.response is not None) == (outcome.kind is OutcomeKind.OBSERVED)
    if outcome.kind is OutcomeKind.OBSERVED:
        assert status == 200
    else:
        assert outcome.error is not None
        assert outcome.error.http_status == status
        assert outcome.error.message
    if status == 429:
        assert outcome.kind is OutcomeKind.THROTTLED


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@SLOW
@given(
    st.sampled_from([200, 400, 401, 403, 404, 422, 429, 500, 503]),
    st.dictionaries(
        st.sampled_from(
            ["status", "code", "message", "error", "error_code", "error_msg", "entities"]
        ),
        json_values,
    ),
)
def test_classify_any_json_object(status: int, body: dict[str, Any]) -> None:
    outcome = run(status, body)
    if status == 200 and outcome.kind is not OutcomeKind.THROTTLED:
        try:
            parse_response(body)
        except MalformedResponse:
            assert outcome.kind is OutcomeKind.TRANSIENT
        else:
            assert outcome.kind is OutcomeKind.OBSERVED


# --- vendor_error -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (NESTED_NOT_FOUND, ("Common.0011", "Invalid job ID")),
        (GATEWAY_THROTTLED, ("APIGW.0308", "The request is throttled.")),
        (TOP_LEVEL_THROTTLED, ("Common.1503", "Request throttled")),
        ({"error": {"code": "X"}}, ("X", None)),
        ({"error": {"message": "only a message"}}, (None, "only a message")),
        (
            {"error": {"error_code": "G.1", "error_msg": "nested gateway"}},
            ("G.1", "nested gateway"),
        ),
        ({"error_code": "G.2"}, ("G.2", None)),
        ({"error_msg": "m"}, (None, "m")),
        ({"code": 500, "message": "numeric code"}, (None, "numeric code")),
        # The nested object wins over top-level fields.
        ({"error": {"code": "N", "message": "n"}, "code": "T", "message": "t"}, ("N", "n")),
        # A non-object "error" is ignored: the top level is read instead.
        ({"error": "boom", "code": "T", "message": "t"}, ("T", "t")),
        ({"error": "boom"}, (None, None)),
        ({"status": "SUCCESS", "entities": {}}, (None, None)),
        ({"code": None, "message": None, "error_code": None}, (None, None)),
        ({}, (None, None)),
        (None, (None, None)),
        ([{"code": "X", "message": "Y"}], (None, None)),
        ("code", (None, None)),
        (42, (None, None)),
    ],
    ids=repr,
)
def test_vendor_error(body: object, expected: tuple[str | None, str | None]) -> None:
    assert vendor_error(body) == expected


def test_vendor_example_has_no_vendor_error() -> None:
    assert vendor_error(VENDOR_EXAMPLE) == (None, None)


@SLOW
@given(json_values)
def test_vendor_error_never_raises_and_returns_strings(body: object) -> None:
    code, message = vendor_error(body)
    assert code is None or isinstance(code, str)
    assert message is None or isinstance(message, str)


def test_upstream_error_to_json() -> None:
    error = UpstreamError(code="APIGW.0308", message="throttled", http_status=429)
    assert error.to_json("2024-01-01T00:00:00.000Z") == {
        "code": "APIGW.0308",
        "message": "throttled",
        "http_status": 429,
        "at": "2024-01-01T00:00:00.000Z",
    }


# --- parse_retry_after --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("1", 1.0),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("2.5", 2.5),
        ("3600", 3600.0),
        ("3601", 3600.0),
        ("86400", 3600.0),
        ("1e9", 3600.0),
        ("-3", 0.0),
        ("inf", 3600.0),
        ("-inf", 0.0),
        ("nan", None),
        ("NaN", None),
        ("", None),
        ("   ", None),
        (None, None),
        ("soon", None),
        ("5s", None),
        ("Wed, 31 Feb 2024 25:61:00 GMT", None),
    ],
)
def test_retry_after_values(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(30, 30.0), (0, 0.0), (-30, 0.0), (-86400, 0.0), (7200, 3600.0)],
)
def test_retry_after_imf_fixdate(offset: int, expected: float) -> None:
    value = email.utils.formatdate(NOW + offset, usegmt=True)
    assert value.endswith(" GMT")
    assert parse_retry_after(value, NOW) == expected


def test_retry_after_rfc850_date() -> None:
    # NOW + 60 s = Tuesday, 14-Nov-23 22:14:20 GMT
    assert parse_retry_after("Tuesday, 14-Nov-23 22:14:20 GMT", NOW) == 60.0


def test_retry_after_date_with_numeric_zone() -> None:
    assert parse_retry_after("Tue, 14 Nov 2023 23:14:20 +0100", NOW) == 60.0


@pytest.fixture
def non_utc_local_time() -> Iterator[None]:
    """Run with the process's local time zone at UTC-5 (a POSIX TZ, no tzdata needed)."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "EST5"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


def test_retry_after_gmt_date_ignores_the_local_time_zone(non_utc_local_time: None) -> None:
    assert time.timezone == 5 * 3600
    assert parse_retry_after(email.utils.formatdate(NOW + 60, usegmt=True), NOW) == 60.0


def test_retry_after_asctime_date_is_gmt(non_utc_local_time: None) -> None:
    # NOW + 60 s in the obsolete asctime() format, which RFC 9110 says is always GMT.
    assert parse_retry_after("Tue Nov 14 22:14:20 2023", NOW) == 60.0


@FAST
@given(st.integers(min_value=0, max_value=3600))
def test_retry_after_delta_seconds_round_trip(seconds: int) -> None:
    assert parse_retry_after(str(seconds), NOW) == float(seconds)


@FAST
@given(st.integers(min_value=-(10**6), max_value=10**6))
def test_retry_after_http_date_is_clamped_delta(offset: int) -> None:
    value = email.utils.formatdate(NOW + offset, usegmt=True)
    assert parse_retry_after(value, NOW) == float(min(max(offset, 0), 3600))


@SLOW
@given(
    st.one_of(
        st.none(),
        st.text(max_size=40),
        st.from_regex(
            r"[A-Za-z]{3}, \d{1,2} [A-Za-z]{3} \d{1,6} \d\d:\d\d:\d\d( GMT| [+-]\d{4})?",
            fullmatch=True,
        ),
    )
)
def test_retry_after_never_raises_and_is_bounded(value: str | None) -> None:
    result = parse_retry_after(value, NOW)
    assert result is None or 0.0 <= result <= 3600.0
