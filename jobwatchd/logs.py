"""Logging: structlog, JSON lines (orjson) on stdout, or a console view on a terminal."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import IO, Any, TextIO

import orjson
import structlog

from jobwatchd.safetext import printable

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


JOURNAL_PRIORITIES = {
    "debug": 7,
    "info": 6,
    "warning": 4,
    "warn": 4,
    "error": 3,
    "exception": 3,
    "critical": 2,
}
"""syslog priorities of structlog's method names (journald reads them from a ``<N>`` prefix)."""


def is_journal_stream(stream: IO[Any] | int, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``stream`` (a file or a descriptor) is connected to the journal:
    systemd names it in ``$JOURNAL_STREAM``.

    The variable holds ``DEVICE:INODE`` of the stream; it is inherited by
    children whose output goes elsewhere, so the descriptor itself is compared.
    A stream with no descriptor (an in-memory one) is not the journal.
    """
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        st = os.fstat(stream if isinstance(stream, int) else stream.fileno())
        return st.st_dev == int(device) and st.st_ino == int(inode)
    except (OSError, ValueError):
        return False


class JournalPriorityPrefix:
    """Wrap a bytes renderer: each line starts with ``<N>``, its syslog priority.

    journald strips the prefix and stores the rest as MESSAGE with PRIORITY=N
    (``SyslogLevelPrefix=yes``, the default), so ``journalctl -p err`` finds
    errors and the JSON line stays intact.
    """

    def __init__(self, renderer: Any) -> None:
        self._renderer = renderer

    def __call__(
        self, logger: Any, method_name: str, event_dict: structlog.typing.EventDict
    ) -> bytes:
        priority = JOURNAL_PRIORITIES.get(method_name, 6)
        rendered: bytes = self._renderer(logger, method_name, event_dict)
        return b"<%d>%s" % (priority, rendered)


class _NamedBytesLogger(structlog.BytesLogger):
    def __init__(self, file: Any, name: str | None) -> None:
        super().__init__(file)
        self.name = name


class _NamedPrintLogger(structlog.PrintLogger):
    def __init__(self, file: TextIO, name: str | None) -> None:
        super().__init__(file)
        self.name = name


def add_logger_name(
    logger: Any, method_name: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Add ``logger``: the name given to :func:`get_logger`."""
    name = getattr(logger, "name", None)
    if name:
        event_dict.setdefault("logger", name)
    return event_dict


def escape_for_terminal(
    logger: Any, method_name: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Escape every string of a console line (upstream chose many of them), so that
    no escape sequence reaches the terminal; tracebacks keep their line breaks."""
    for key, value in event_dict.items():
        if isinstance(value, str):
            if key == "exception":
                event_dict[key] = "\n".join(printable(line) for line in value.split("\n"))
            else:
                event_dict[key] = printable(value)
    return event_dict


def configure_logging(
    level: str = "info", *, console: bool | None = None, journal: bool | None = None
) -> None:
    """Configure structlog for the process.

    One JSON object per line with ``timestamp`` (ISO 8601 UTC), ``level``,
    ``logger`` and ``event``; a human-friendly renderer when stdout is a
    terminal (``console=None`` decides by ``isatty``). When stdout is the
    journal (``journal=None`` decides by ``$JOURNAL_STREAM``), each JSON line
    carries its syslog priority as a ``<N>`` prefix.
    """
    if console is None:
        console = sys.stdout.isatty()
    if journal is None:
        journal = not console and is_journal_stream(sys.stdout)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    processors: list[structlog.typing.Processor]
    factory: Any
    if console:
        processors = [
            *shared,
            structlog.processors.format_exc_info,
            escape_for_terminal,
            # no rich traceback: it prints local variables, secrets among them
            structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
        ]

        def factory(*args: Any) -> Any:
            return _NamedPrintLogger(sys.stdout, args[0] if args else None)
    else:
        renderer: Any = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        if journal:
            renderer = JournalPriorityPrefix(renderer)
        processors = [*shared, structlog.processors.format_exc_info, renderer]

        def factory(*args: Any) -> Any:
            return _NamedBytesLogger(sys.stdout.buffer, args[0] if args else None)

    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=factory,
        # Not cached: a reload may change the level of loggers that already exist.
        cache_logger_on_first_use=False,
    )
    # Libraries that log through the standard library: warnings and up, on stderr.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")


def get_logger(name: str) -> Any:
    """A logger whose lines carry ``logger=name``; safe to call at import time."""
    return structlog.get_logger(name)
