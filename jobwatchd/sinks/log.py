"""The ``log`` sink: one structured log line per event."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from jobwatchd.logs import get_logger
from jobwatchd.models import JOB_TRANSITION
from jobwatchd.sinks import Delivery, OptionScope, SinkConfig, SinkContext


@dataclass(frozen=True, slots=True)
class LogOptions:
    """The ``log`` sink has no keys of its own beyond the common ones."""

    @classmethod
    def parse(cls, table: Mapping[str, object], scope: OptionScope) -> LogOptions:
        """Refuse any key of its own (``path`` on a log sink is a mistake)."""
        scope.check_keys(table, ())
        return cls()

    def render(self) -> dict[str, object]:
        """Nothing to show."""
        return {}


class LogSink:
    """Logs ``job.transition`` / ``subjob.transition`` with the data fields as keys."""

    parse_options = LogOptions.parse

    def __init__(self, config: SinkConfig, context: SinkContext) -> None:
        self.name = config.name
        self._log = get_logger("jobwatchd.events")

    async def start(self) -> None:
        """Nothing to open."""

    async def deliver(self, batch: Sequence[Delivery]) -> None:
        """Log each event."""
        for item in batch:
            cloud_event = item.cloud_event
            name = (
                "job.transition" if cloud_event["type"] == JOB_TRANSITION else "subjob.transition"
            )
            self._log.info(name, event_id=cloud_event["id"], **cloud_event["data"])

    async def reopen(self) -> None:
        """Nothing to reopen."""

    async def close(self) -> None:
        """Nothing to close."""
