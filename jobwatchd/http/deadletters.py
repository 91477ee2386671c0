"""``GET /v1/dead-letters`` and ``POST /v1/dead-letters/redeliver``.

Errors are raised as :class:`ValidationError`, which the API's error
middleware renders as RFC 9457 problems.
"""

from __future__ import annotations

from aiohttp import web

from jobwatchd.http.responses import json_object, json_response, problem, read_body
from jobwatchd.sinks.deadletters import MAX_REDELIVER_IDS, DeadLetterService, valid_sink_name
from jobwatchd.validation import ValidationError, validate_id


def _sink_param(value: object, field_name: str) -> str:
    if not isinstance(value, str) or not valid_sink_name(value):
        raise ValidationError(field_name, "must be a sink name (1-64 of A-Z, a-z, 0-9, _ . -)")
    return value


class DeadLetterHandlers:
    """The dead-letter routes' handlers, over a :class:`DeadLetterService`."""

    def __init__(self, service: DeadLetterService, *, body_timeout: float) -> None:
        self.service = service
        self.body_timeout = body_timeout
        """Seconds a redelivery request may take to send its body (``api.body_timeout``)."""

    async def listing(self, request: web.Request) -> web.Response:
        """``GET /v1/dead-letters[?sink=NAME]``."""
        sink = request.query.get("sink")
        if sink is not None and not self.service.known(_sink_param(sink, "sink")):
            # Reading takes the sink's lock file: never create one for an unknown name.
            return problem(404, "Not found", f"no sink {sink!r} is configured or has dead letters")
        entries = await self.service.read(sink)
        return json_response({"dead_letters": [entry.to_json() for entry in entries]})

    async def redeliver(self, request: web.Request) -> web.Response:
        """``POST /v1/dead-letters/redeliver``: body ``{"sink"?: NAME, "event_ids": [...]}``
        or ``{"sink"?: NAME, "all": true}``."""
        body = json_object(await read_body(request, self.body_timeout))
        unknown = sorted(set(body) - {"sink", "event_ids", "all"})
        if unknown:
            raise ValidationError(unknown[0], "unknown field")
        sink = None if body.get("sink") is None else _sink_param(body["sink"], "sink")
        everything = body.get("all", False)
        if not isinstance(everything, bool):
            raise ValidationError("all", "must be a boolean")
        raw_ids = body.get("event_ids")
        if everything == (raw_ids is not None):
            raise ValidationError("event_ids", "give either event_ids or all=true")
        event_ids: list[str] | None = None
        if raw_ids is not None:
            if not isinstance(raw_ids, list) or not raw_ids or len(raw_ids) > MAX_REDELIVER_IDS:
                raise ValidationError(
                    "event_ids", f"must be an array of 1 to {MAX_REDELIVER_IDS} event ids"
                )
            event_ids = [
                validate_id(value, f"event_ids[{index}]") for index, value in enumerate(raw_ids)
            ]
        report = await self.service.redeliver(sink=sink, event_ids=event_ids)
        return json_response(report.to_json())
