"""An incremental ``text/event-stream`` parser (the wire format of ``/v1/events``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SseMessage:
    """One dispatched SSE block."""

    event: str
    """The ``event:`` field (``message`` when absent)."""
    data: str | None
    """The ``data:`` lines joined; None for a block that only moved the id."""
    id: str | None
    """The last event id after this block (it carries over blocks, as in EventSource)."""


class SseParser:
    """Incremental ``text/event-stream`` parser (lines end in LF or CRLF).

    Blocks with data are dispatched, and so are blocks that only set ``id:``
    (with ``data=None``) so a consumer can track its resume point. Comments
    (heartbeats) are counted.
    """

    def __init__(self) -> None:
        self._pending = b""
        self._event = ""
        self._data: list[str] = []
        self._id_seen = False
        self.last_id: str | None = None
        self.retry_ms: int | None = None
        self.comments = 0

    def feed(self, chunk: bytes) -> list[SseMessage]:
        """Consume ``chunk``; return the blocks it completed."""
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        messages: list[SseMessage] = []
        for raw in lines:
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line:
                message = self._dispatch()
                if message is not None:
                    messages.append(message)
                continue
            if line.startswith(b":"):
                self.comments += 1
                continue
            name, _, value = line.decode("utf-8", "replace").partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._event = value
            elif name == "id" and "\0" not in value:
                self.last_id = value
                self._id_seen = True
            elif name == "retry" and value.isdigit():
                self.retry_ms = int(value)
        return messages

    def _dispatch(self) -> SseMessage | None:
        event, data, id_seen = self._event, self._data, self._id_seen
        self._event, self._data, self._id_seen = "", [], False
        if data:
            return SseMessage(event=event or "message", data="\n".join(data), id=self.last_id)
        if id_seen:
            return SseMessage(event=event or "message", data=None, id=self.last_id)
        return None
