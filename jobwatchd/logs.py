"""Logging: structlog, JSON lines (orjson) on stdout, or a console view on a terminal."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import orjson
import structlog

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


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


def configure_logging(level: str = "info", *, console: bool | None = None) -> None:
    """Configure structlog for the process.

    One JSON object per line with ``timestamp`` (ISO 8601 UTC), ``level``,
    ``logger`` and ``event``; a human-friendly renderer when stdout is a
    terminal (``console=None`` decides by ``isatty``).
    """
    if console is None:
        console = sys.stdout.isatty()
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    processors: list[structlog.typing.Processor]
    factory: Any
    if console:
        processors = [*shared, structlog.dev.ConsoleRenderer()]

        def factory(*args: Any) -> Any:
            return _NamedPrintLogger(sys.stdout, args[0] if args else None)
    else:
        processors = [
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ]

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
