"""Sinks: where events go. The interface, filters and the plugin registry.

A sink is a class registered under the entry-point group ``jobwatchd.sinks``
(the built-in ``log``, ``file`` and ``webhook`` sinks are registered the same
way) and is constructed as ``SinkClass(config, context)``. It acknowledges a batch by
returning from :meth:`Sink.deliver`; raising means "not delivered, retry".
Optional ``concurrency`` and ``batch_max`` attributes let the runner call
``deliver`` for several jobs at once (see :mod:`jobwatchd.delivery`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

import orjson

from jobwatchd.config import ConfigError, SinkConfig, SinkFilter
from jobwatchd.models import StoredEvent

ENTRY_POINT_GROUP = "jobwatchd.sinks"
# Used when the package metadata is unavailable (running from a source tree).
BUILTIN_SINKS = {
    "log": "jobwatchd.sinks.log:LogSink",
    "file": "jobwatchd.sinks.file:FileSink",
    "webhook": "jobwatchd.sinks.webhook:WebhookSink",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkContext:
    """What a sink may need from the daemon."""

    state_dir: Path


@dataclass(frozen=True, slots=True)
class Delivery:
    """An event handed to a sink: the stored record and its decoded CloudEvent."""

    event: StoredEvent
    cloud_event: Mapping[str, Any]


class Sink(Protocol):
    """The sink interface."""

    name: str

    async def start(self) -> None:
        """Open files, sessions, and the like."""

    async def deliver(self, batch: Sequence[Delivery]) -> None:
        """Deliver ``batch`` in order; return only once every event is acknowledged.

        With a ``concurrency`` attribute above 1, calls overlap, but never two
        with events of the same job, and a job's event comes only after its
        earlier ones were acknowledged.
        """

    async def reopen(self) -> None:
        """Reopen outputs (SIGHUP, log rotation)."""

    async def close(self) -> None:
        """Release resources."""


def matches(sink_filter: SinkFilter, cloud_event: Mapping[str, Any]) -> bool:
    """Whether an event passes a sink's filter: its ``types``, ``statuses`` (of ``to``),
    ``terminal_only`` and ``labels`` (all must match)."""
    if sink_filter.types is not None and cloud_event.get("type") not in sink_filter.types:
        return False
    data = cloud_event.get("data") or {}
    if sink_filter.statuses is not None and data.get("to") not in sink_filter.statuses:
        return False
    if sink_filter.terminal_only and not data.get("terminal"):
        return False
    if sink_filter.labels:
        labels = data.get("labels") or {}
        return all(labels.get(key) == value for key, value in sink_filter.labels.items())
    return True


def decode(event: StoredEvent) -> Delivery:
    """Pair a stored event with its decoded CloudEvent."""
    return Delivery(event, orjson.loads(event.payload))


def _resolve(spec: str) -> type[Any]:
    module_name, _, attribute = spec.partition(":")
    module = __import__(module_name, fromlist=[attribute])
    cls: type[Any] = getattr(module, attribute)
    return cls


def sink_class(sink_type: str) -> type[Any]:
    """The class registered for ``sink_type``."""
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == sink_type:
            loaded: type[Any] = entry.load()
            return loaded
    if sink_type in BUILTIN_SINKS:
        return _resolve(BUILTIN_SINKS[sink_type])
    raise LookupError(sink_type)


def create_sink(config: SinkConfig, context: SinkContext, index: int) -> Sink:
    """Instantiate the sink described by ``config``."""
    try:
        cls = sink_class(config.type)
    except LookupError:
        raise ConfigError(
            f"sinks[{index}].type",
            f"no sink type {config.type!r} (built-in: log, file, webhook; plugins register"
            f" under the entry-point group {ENTRY_POINT_GROUP!r})",
        ) from None
    sink: Sink = cls(config, context)
    return sink
