"""The OpenAPI 3.1 description of the HTTP API, served at ``GET /openapi.json``.

It is built from the running config, so the limits it states (``api.max_batch``,
``api.max_body``, the account names, whether a bearer token is required) are
the ones the daemon enforces. The tests validate every handler's requests and
responses against this document and fuzz the live daemon from it, so a change
to a route that is not reflected here fails them.
"""

from __future__ import annotations

from typing import Any, Final

from jobwatchd import __version__
from jobwatchd.config import Config
from jobwatchd.http.events import CLOSED_EVENT, MAX_CURSOR
from jobwatchd.models import DEFAULT_SERVICE, EVENT_TYPES
from jobwatchd.services import SERVICES
from jobwatchd.validation import MAX_LABEL_LENGTH, MAX_LABELS, MAX_TIMEOUT_SECONDS

ID_PATTERN: Final = "^[A-Za-z0-9_-]{1,64}$"
SINK_PATTERN: Final = "^[A-Za-z0-9_.-]{1,64}$"
DURATION_PATTERN: Final = r"^\s*([0-9]+(\.[0-9]+)?\s*(ms|s|m|h|d)\s*)+$"
SELECTOR_PATTERN: Final = f"^[^=]{{1,{MAX_LABEL_LENGTH}}}=[\\s\\S]{{0,{MAX_LABEL_LENGTH}}}$"
MAX_WAIT_SECONDS: Final = 3600
MAX_LIST_LIMIT: Final = 1000
MAX_REDELIVER_IDS: Final = 10_000
PROBLEM_TYPE: Final = "application/problem+json"
PUBLIC_PATHS: Final = frozenset({"/healthz", "/readyz"})


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_TYPE: {"schema": _ref("Problem")}}}


def _id_param(name: str, where: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": {"type": "string", "pattern": ID_PATTERN},
    }


def _repeated(name: str, items: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "style": "form",
        "explode": True,
        "description": description,
        "schema": {"type": "array", "items": items},
    }


def _schemas(config: Config) -> dict[str, Any]:
    string_or_null = {"type": ["string", "null"]}
    labels = {
        "type": "object",
        "maxProperties": MAX_LABELS,
        "propertyNames": {"minLength": 1, "maxLength": MAX_LABEL_LENGTH},
        "additionalProperties": {"type": "string", "maxLength": MAX_LABEL_LENGTH},
        "description": f"At most {MAX_LABELS} labels; keys 1-{MAX_LABEL_LENGTH} characters,"
        f" values at most {MAX_LABEL_LENGTH}.",
    }
    account_names: list[Any] = [account.name for account in config.accounts]
    return {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details; `field` names the offending field.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
                "field": {"type": "string"},
                "job_id": {"type": "string"},
            },
        },
        "Labels": labels,
        "Registration": {
            "type": "object",
            "additionalProperties": False,
            "required": ["job_id"],
            "properties": {
                "job_id": {"type": "string", "pattern": ID_PATTERN},
                "service": {
                    "type": ["string", "null"],
                    "enum": [*SERVICES, None],
                    "default": DEFAULT_SERVICE,
                    "description": "The cloud service whose job API tracks the job; the"
                    " account needs an endpoint for it (a region, or endpoints.<service>).",
                },
                "project_id": {"type": ["string", "null"], "pattern": ID_PATTERN},
                "account": {
                    "type": ["string", "null"],
                    "enum": [*account_names, None],
                    "description": "A configured account; by default the account whose"
                    " project_id matches, else the first.",
                },
                "labels": _nullable(_ref("Labels")),
                "timeout": {
                    "description": 'Seconds (or a duration like "90m") after which the job'
                    f" becomes TIMEOUT; more than 0 and at most {MAX_TIMEOUT_SECONDS:.0f}.",
                    "anyOf": [
                        {
                            "type": "number",
                            "exclusiveMinimum": 0,
                            "maximum": MAX_TIMEOUT_SECONDS,
                        },
                        {"type": "string", "pattern": DURATION_PATTERN},
                        {"type": "null"},
                    ],
                },
            },
        },
        "Batch": {
            "type": "object",
            "additionalProperties": False,
            "required": ["jobs"],
            "properties": {
                "jobs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": config.api.max_batch,
                    "items": _ref("Registration"),
                },
            },
        },
        "LastError": {
            "type": "object",
            "required": ["code", "message", "http_status", "at"],
            "properties": {
                "code": string_or_null,
                "message": {"type": "string"},
                "http_status": {"type": ["integer", "null"]},
                "at": {"type": "string", "format": "date-time"},
            },
        },
        "Job": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "job_id",
                "project_id",
                "account",
                "service",
                "status",
                "terminal",
                "job_type",
                "begin_time",
                "end_time",
                "error_code",
                "fail_reason",
                "entities",
                "labels",
                "registered_at",
                "updated_at",
                "polls",
                "next_poll_at",
                "last_error",
                "progress",
                "history",
            ],
            "properties": {
                "job_id": {"type": "string", "pattern": ID_PATTERN},
                "project_id": {"type": "string", "pattern": ID_PATTERN},
                "account": {"type": "string"},
                "service": {"type": "string", "enum": list(SERVICES)},
                "status": {
                    "type": "string",
                    "description": "PENDING, INIT, RUNNING, SUCCESS, FAIL, TIMEOUT, NOT_FOUND,"
                    " ERROR, or another upstream status passed through.",
                },
                "terminal": {"type": "boolean"},
                "job_type": string_or_null,
                "begin_time": string_or_null,
                "end_time": string_or_null,
                "error_code": string_or_null,
                "fail_reason": string_or_null,
                "entities": {"type": ["object", "null"], "description": "Upstream, raw."},
                "labels": _ref("Labels"),
                "registered_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": "string", "format": "date-time"},
                "polls": {"type": "integer", "minimum": 0},
                "next_poll_at": {"type": ["string", "null"], "format": "date-time"},
                "last_error": _nullable(_ref("LastError")),
                "progress": {
                    "type": "object",
                    "required": ["percent", "sub_jobs_done", "sub_jobs_total"],
                    "properties": {
                        "percent": {
                            "type": ["number", "null"],
                            "minimum": 0,
                            "maximum": 100,
                            "description": "As upstream last reported it (IMS, the RDS"
                            " family); null when its format reports none.",
                        },
                        "sub_jobs_done": {"type": "integer", "minimum": 0},
                        "sub_jobs_total": {"type": ["integer", "null"], "minimum": 0},
                    },
                },
                "history": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["from", "to", "at"],
                        "properties": {
                            "from": string_or_null,
                            "to": {"type": "string"},
                            "at": {"type": "string", "format": "date-time"},
                        },
                    },
                },
            },
        },
        "BatchResult": {
            "type": "object",
            "additionalProperties": False,
            "required": ["jobs", "created"],
            "properties": {
                "jobs": {"type": "array", "items": _ref("Job")},
                "created": {"type": "integer", "minimum": 0},
            },
        },
        "JobList": {
            "type": "object",
            "additionalProperties": False,
            "required": ["jobs", "next"],
            "properties": {
                "jobs": {"type": "array", "items": _ref("Job")},
                "next": {
                    "type": ["string", "null"],
                    "description": "Pass as `after` for the next page; null on the last.",
                },
            },
        },
        "CloudEvent": {
            "type": "object",
            "description": "CloudEvents 1.0, structured JSON mode (the `data:` of an SSE event).",
            "required": [
                "specversion",
                "id",
                "source",
                "type",
                "subject",
                "time",
                "datacontenttype",
                "data",
            ],
            "properties": {
                "specversion": {"const": "1.0"},
                "id": {"type": "string", "minLength": 1},
                "source": {"type": "string", "minLength": 1},
                "type": {"enum": sorted(EVENT_TYPES)},
                "subject": {"type": "string"},
                "time": {"type": "string", "format": "date-time"},
                "datacontenttype": {"const": "application/json"},
                "data": {
                    "type": "object",
                    "required": ["job_id", "from", "to", "terminal", "labels", "observed_at"],
                    "properties": {
                        "job_id": {"type": "string"},
                        "parent_job_id": {"type": "string"},
                        "from": string_or_null,
                        "to": {"type": "string"},
                        "terminal": {"type": "boolean"},
                        "labels": _ref("Labels"),
                        "observed_at": {"type": "string", "format": "date-time"},
                    },
                },
            },
        },
        "StreamEvent": {
            "type": "object",
            "description": "One event of the `/v1/events` stream (as for an OpenAPI 3.2"
            " `itemSchema`: the fields of an SSE event, `data` holding JSON).",
            "required": ["event", "data"],
            "properties": {
                "event": {"enum": [*sorted(EVENT_TYPES), CLOSED_EVENT]},
                "id": {"type": "string", "pattern": "^[0-9]+$"},
                "data": {"type": "string"},
                "retry": {"type": "integer", "minimum": 0},
            },
            "oneOf": [
                {
                    "properties": {
                        "event": {"enum": sorted(EVENT_TYPES)},
                        "data": {
                            "contentMediaType": "application/json",
                            "contentSchema": _ref("CloudEvent"),
                        },
                    }
                },
                {
                    "properties": {
                        "event": {"const": CLOSED_EVENT},
                        "data": {
                            "contentMediaType": "application/json",
                            "contentSchema": _ref("StreamClosed"),
                        },
                    }
                },
            ],
        },
        "StreamClosed": {
            "type": "object",
            "description": f"The data of a `{CLOSED_EVENT}` event: the daemon ends the stream"
            " early; reconnect with Last-Event-ID to resume.",
            "required": ["reason", "detail", "last_id"],
            "properties": {
                "reason": {"enum": ["slow_reader", "shutdown"]},
                "detail": {"type": "string"},
                "last_id": {"type": "integer", "minimum": 0},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status", "version"],
            "properties": {"status": {"const": "ok"}, "version": {"type": "string"}},
        },
        "Readiness": {
            "type": "object",
            "required": ["status"],
            "description": "Counts and per-account upstream state; upstream trouble is"
            " reported here but never makes the daemon unready.",
            "properties": {
                "status": {"const": "ready"},
                "active_jobs": {"type": "integer"},
                "api": {
                    "type": "object",
                    "description": "API connections: open, serving a request, displaced"
                    " at the bound (api.max_connections) while waiting for a request.",
                    "properties": {
                        name: {"type": "integer"}
                        for name in ("connections", "serving", "displaced", "max")
                    },
                },
                "accounts": {"type": "object"},
                "sinks": {"type": "object"},
            },
        },
        "DeadLetter": {
            "type": "object",
            "required": [
                "sink",
                "event_id",
                "seq",
                "job_id",
                "type",
                "reason",
                "status",
                "attempts",
                "first_attempt_at",
                "dead_lettered_at",
                "redelivery_attempts",
                "last_redelivery_error",
                "event",
            ],
            "properties": {
                "sink": {"type": "string"},
                "event_id": {"type": "string"},
                "seq": {"type": "integer"},
                "job_id": {"type": "string"},
                "type": {"type": "string"},
                "reason": {"type": "string"},
                "status": {"type": ["integer", "null"]},
                "attempts": {"type": "integer"},
                "first_attempt_at": {"type": "string"},
                "dead_lettered_at": {"type": "string"},
                "redelivery_attempts": {"type": "integer"},
                "last_redelivery_error": string_or_null,
                "event": _ref("CloudEvent"),
            },
        },
        "Redelivery": {
            "type": "object",
            "additionalProperties": False,
            "description": "Either `event_ids`, or `all: true`.",
            "properties": {
                "sink": {"type": ["string", "null"], "pattern": SINK_PATTERN},
                "event_ids": {
                    "type": ["array", "null"],
                    "minItems": 1,
                    "maxItems": MAX_REDELIVER_IDS,
                    "items": {"type": "string", "pattern": ID_PATTERN},
                },
                "all": {"type": "boolean"},
            },
            "oneOf": [
                {
                    "required": ["event_ids"],
                    "properties": {"event_ids": {"type": "array"}, "all": {"const": False}},
                },
                {
                    "required": ["all"],
                    "properties": {"all": {"const": True}, "event_ids": {"type": "null"}},
                },
            ],
        },
        "RedeliveryReport": {
            "type": "object",
            "required": ["redelivered", "failed", "not_found"],
            "properties": {
                "redelivered": {"type": "array", "items": {"type": "string"}},
                "failed": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["sink", "event_id", "reason"],
                        "properties": {
                            "sink": {"type": "string"},
                            "event_id": {"type": "string"},
                            "reason": {"type": "string"},
                        },
                    },
                },
                "not_found": {"type": "array", "items": {"type": "string"}},
            },
        },
    }


def _operations(config: Config) -> dict[str, dict[str, Any]]:
    bad = _problem("Invalid request: `field` names what is wrong.")
    too_large = _problem(f"The body is over api.max_body ({config.api.max_body} bytes).")
    internal = _problem("Unexpected failure; see the daemon's log.")
    not_tracked = _problem("The job is not tracked.")
    job_id = _id_param("job_id", "path", "The job ID (it goes into the upstream URL path).")
    job = _ref("Job")
    return {
        "/v1/jobs": {
            "post": {
                "operationId": "registerJobs",
                "summary": "Track one job, or a batch atomically",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"oneOf": [_ref("Registration"), _ref("Batch")]}
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        {"oneOf": [job, _ref("BatchResult")]},
                        "Already tracked under the same project (for a batch: all were).",
                    ),
                    "201": _json(
                        {"oneOf": [job, _ref("BatchResult")]},
                        "Newly tracked (for a batch: at least one was).",
                    ),
                    "400": bad,
                    "408": _problem("The body took longer than api.body_timeout."),
                    "409": _problem("Tracked under another project; nothing was stored."),
                    "413": too_large,
                    "500": internal,
                    "503": _problem("The daemon is draining."),
                },
            },
            "get": {
                "operationId": "listJobs",
                "summary": "Tracked jobs, ordered by ID, a page at a time",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "pattern": "^[\\x00-\\x7F]{1,64}$"},
                    },
                    {
                        "name": "service",
                        "in": "query",
                        "schema": {"type": "string", "enum": list(SERVICES)},
                    },
                    _repeated(
                        "label",
                        {"type": "string", "pattern": SELECTOR_PATTERN},
                        "k=v; every one must match.",
                    ),
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_LIST_LIMIT,
                            "default": 100,
                        },
                    },
                    _id_param("after", "query", "The `next` cursor of the previous page."),
                ],
                "responses": {
                    "200": _json(_ref("JobList"), "A page of jobs."),
                    "400": bad,
                    "500": internal,
                },
            },
        },
        "/v1/jobs/{job_id}": {
            "get": {
                "operationId": "getJob",
                "summary": "One job; long-polls with `wait` until it is terminal",
                "parameters": [
                    job_id,
                    {
                        "name": "wait",
                        "in": "query",
                        "description": "Seconds to wait for a terminal status.",
                        "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
                    },
                ],
                "responses": {
                    "200": _json(job, "The job (terminal, or as it is when the wait elapsed)."),
                    "400": bad,
                    "404": not_tracked,
                    "500": internal,
                },
            },
            "delete": {
                "operationId": "deleteJob",
                "summary": "Stop tracking a job (its recorded events are still delivered)",
                "parameters": [job_id],
                "responses": {
                    "204": {"description": "No longer tracked."},
                    "400": bad,
                    "404": not_tracked,
                    "500": internal,
                },
            },
        },
        "/v1/events": {
            "get": {
                "operationId": "streamEvents",
                "summary": "Server-Sent Events from the durable event log",
                "description": "Each event: `id:` its sequence number (the resume cursor),"
                " `event:` the CloudEvent type, `data:` the CloudEvent JSON. The stream opens"
                " with `retry:` and an `id:`-only block holding the cursor it starts after."
                " `: ping` comments are heartbeats. The daemon ends a stream early with a"
                f" `{CLOSED_EVENT}` event (a client that does not keep up, or shutdown);"
                " reconnect with `Last-Event-ID` to resume without loss.",
                "parameters": [
                    {
                        "name": "after",
                        "in": "query",
                        "description": "Start after this event id (default: the newest).",
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_CURSOR},
                    },
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "description": "Resume after this event id; wins over `after`"
                        " (empty: as if absent).",
                        "schema": {"type": "string", "pattern": "^[0-9]{0,19}$"},
                    },
                    {
                        "name": "follow",
                        "in": "query",
                        "description": "false: end once the events recorded so far are sent.",
                        "schema": {"type": "boolean", "default": True},
                    },
                    _repeated(
                        "job",
                        {"type": "string", "pattern": ID_PATTERN},
                        "Only these jobs (and their sub-jobs).",
                    ),
                    _repeated("type", {"enum": sorted(EVENT_TYPES)}, "Only these event types."),
                    _repeated(
                        "label",
                        {"type": "string", "pattern": SELECTOR_PATTERN},
                        "k=v; the job's labels must match every one.",
                    ),
                ],
                "responses": {
                    "200": {
                        "description": "The event stream.",
                        "content": {"text/event-stream": {"schema": _ref("StreamEvent")}},
                    },
                    "400": bad,
                    "500": internal,
                    "503": _problem("Shutting down, or too many streams open."),
                },
            }
        },
        "/v1/dead-letters": {
            "get": {
                "operationId": "listDeadLetters",
                "summary": "Events sinks gave up on",
                "parameters": [
                    {
                        "name": "sink",
                        "in": "query",
                        "schema": {"type": "string", "pattern": SINK_PATTERN},
                    }
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["dead_letters"],
                            "properties": {
                                "dead_letters": {"type": "array", "items": _ref("DeadLetter")}
                            },
                        },
                        "Every dead letter (of `sink`).",
                    ),
                    "400": bad,
                    "404": _problem("No such sink is configured or has dead letters."),
                    "500": internal,
                },
            }
        },
        "/v1/dead-letters/redeliver": {
            "post": {
                "operationId": "redeliverDeadLetters",
                "summary": "Send dead letters again through their sink",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("Redelivery")}},
                },
                "responses": {
                    "200": _json(_ref("RedeliveryReport"), "What was redelivered."),
                    "400": bad,
                    "408": _problem("The body took longer than api.body_timeout."),
                    "413": too_large,
                    "500": internal,
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "Liveness",
                "responses": {"200": _json(_ref("Health"), "Alive.")},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "ready",
                "summary": "Readiness: the store is open and the API bound",
                "responses": {"200": _json(_ref("Readiness"), "Ready.")},
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "The Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "500": internal,
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1.")},
            }
        },
    }


def build_document(config: Config, *, token: bool) -> dict[str, Any]:
    """The OpenAPI document for a daemon running ``config`` (``token``: one is required)."""
    paths = _operations(config)
    misdirected = _problem("The Host header names neither this daemon nor api.allowed_hosts.")
    cross_site = _problem("Sent by another site's page (Origin or Sec-Fetch-Site).")
    form_body = _problem("A text/plain or multipart/form-data body (what a form can send).")
    for operations in paths.values():
        for method, operation in operations.items():
            operation["responses"].setdefault("421", misdirected)
            operation["responses"].setdefault("403", cross_site)
            if method not in ("get", "head"):
                operation["responses"].setdefault("415", form_body)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "jobwatchd",
            "version": __version__,
            "description": "Tracks ECS asynchronous jobs and records every transition of"
            " the jobs and their sub-jobs as CloudEvents.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": _schemas(config)},
    }
    if token:
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "api.token_file"}
        }
        document["security"] = [{"bearer": []}]
        unauthorized = _problem("A valid bearer token is required.")
        for path, operations in paths.items():
            for operation in operations.values():
                if path in PUBLIC_PATHS:
                    operation["security"] = []
                else:
                    operation["responses"]["401"] = unauthorized
    return document
