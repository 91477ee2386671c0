"""Sinks: where events go. The interface, filters, sink records and the plugin registry.

A sink is a class registered under the entry-point group ``jobwatchd.sinks``
(the built-in ``log``, ``file`` and ``webhook`` sinks are registered the same
way) and is constructed as ``SinkClass(config, context)``. It acknowledges a batch by
returning from :meth:`Sink.deliver`; raising means "not delivered, retry".
Optional ``concurrency`` and ``batch_max`` attributes let the runner call
``deliver`` for several jobs at once (see :mod:`jobwatchd.engine.delivery`).

Options: a sink's ``[[sinks]]`` table holds the common keys
(:data:`COMMON_SINK_KEYS`: ``type``, ``name`` and the filters), which the
config parses, and the sink's own keys, which the registry hands to the
class's ``parse_options(table, scope)`` (an :data:`OptionsParser`): it gets
the table without the common keys and an :class:`OptionScope`, raises
:class:`~jobwatchd.options.ConfigError` naming the key on bad input, and
returns the value the sink later finds in ``config.options``, best a frozen
dataclass with a ``render()`` method giving what ``check-config`` prints
(secrets masked). A class without ``parse_options`` gets its keys unvalidated
as a read-only mapping, shown by ``check-config`` with secret-looking values
masked (:func:`jobwatchd.options.mask_options`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Protocol, cast, runtime_checkable

import orjson

from jobwatchd.models import StoredEvent
from jobwatchd.options import ConfigError, ParseContext, check_keys, mask_options, required

ENTRY_POINT_GROUP = "jobwatchd.sinks"
# Used when the package metadata is unavailable (running from a source tree).
BUILTIN_SINKS = {
    "log": "jobwatchd.sinks.log:LogSink",
    "file": "jobwatchd.sinks.file:FileSink",
    "webhook": "jobwatchd.sinks.webhook:WebhookSink",
}

FILTER_KEYS: Final = ("types", "statuses", "terminal_only", "labels")
COMMON_SINK_KEYS: Final = ("type", "name", *FILTER_KEYS)
"""The keys of every ``[[sinks]]`` table, parsed by the config; the rest are the sink's."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkFilter:
    """Which events a sink receives; ``None`` / empty means "no restriction".

    Applied by :func:`matches`.
    """

    types: frozenset[str] | None = None
    statuses: frozenset[str] | None = None
    terminal_only: bool = False
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkConfig:
    """One ``[[sinks]]`` entry.

    ``name`` keys the sink's durable delivery position. ``options`` is what the
    type's options parser made of the sink's own keys: ``LogOptions``,
    ``FileOptions`` and ``WebhookOptions`` (next to each built-in sink), a
    plugin's own value, or, for a type without a parser, a read-only mapping
    of the keys as written.
    """

    type: str
    name: str
    filter: SinkFilter = field(default_factory=SinkFilter)
    options: object = field(default_factory=lambda: MappingProxyType({}), hash=False)


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


@dataclass(frozen=True, slots=True)
class OptionScope:
    """What a sink's options parser gets beside its table.

    ``prefix`` names the sink's table in messages (``sinks[2]``); file-sink
    style data paths start at ``state_dir``; ``context`` resolves other paths
    (relative to the config file's directory) and secret files, whose checks
    it defers until the whole config is validated.
    """

    prefix: str
    state_dir: Path
    context: ParseContext

    def key(self, name: str) -> str:
        """The dotted key of option ``name`` (``sinks[2].timeout``), for messages."""
        return f"{self.prefix}.{name}"

    def check_keys(self, table: Mapping[str, object], allowed: Sequence[str]) -> None:
        """Refuse a key that is neither common nor in ``allowed`` (with a suggestion)."""
        check_keys(table, self.prefix, (*COMMON_SINK_KEYS, *allowed))

    def required(self, table: Mapping[str, object], name: str) -> object:
        """``table[name]``, or a "required" error naming it."""
        return required(table, name, self.prefix)


OptionsParser = Callable[[Mapping[str, object], OptionScope], object]
"""A sink type's options parser: its own keys (a read-only mapping) → its options."""


@runtime_checkable
class RenderableOptions(Protocol):
    """Options that say themselves what ``check-config`` prints of them."""

    def render(self) -> Mapping[str, object]:
        """The options as TOML values, every secret masked."""


@dataclass(frozen=True, slots=True)
class SinkType:
    """A registered sink type: its options parser (None: keys taken as written) and class."""

    factory: type[Any]
    parse_options: OptionsParser | None = None


def _resolve(spec: str) -> type[Any]:
    module_name, _, attribute = spec.partition(":")
    module = __import__(module_name, fromlist=[attribute])
    cls: type[Any] = getattr(module, attribute)
    return cls


@dataclass(frozen=True, slots=True)
class SinkRegistry:
    """The sink types installed now: for each type name its entry point (the
    first found), else a built-in. Finding the entry points reads every
    installed distribution's metadata, so one registry serves a whole config;
    a reload takes a new one and sees plugins installed since."""

    entries: Mapping[str, EntryPoint]

    @classmethod
    def installed(cls) -> SinkRegistry:
        """The sink types registered under :data:`ENTRY_POINT_GROUP` now."""
        entries: dict[str, EntryPoint] = {}
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            entries.setdefault(entry.name, entry)
        return cls(MappingProxyType(entries))

    def sink_class(self, sink_type: str) -> type[Any]:
        """The class registered for ``sink_type`` (:class:`LookupError` when none is)."""
        entry = self.entries.get(sink_type)
        if entry is not None:
            loaded: type[Any] = entry.load()
            return loaded
        if sink_type in BUILTIN_SINKS:
            return _resolve(BUILTIN_SINKS[sink_type])
        raise LookupError(sink_type)

    def sink_type(self, sink_type: str) -> SinkType:
        """The options parser and class registered for ``sink_type``: the class's
        ``parse_options`` attribute, when it has one (:class:`LookupError` when no
        class is registered)."""
        cls = self.sink_class(sink_type)
        parser: OptionsParser | None = getattr(cls, "parse_options", None)
        return SinkType(factory=cls, parse_options=parser)

    def parse_options(
        self, sink_type: str, table: Mapping[str, object], scope: OptionScope
    ) -> object:
        """The options of a sink of type ``sink_type`` from its whole ``[[sinks]]`` table.

        The common keys are left out; a registered parser gets the rest, a type
        without one (or not installed here: starting the daemon reports that)
        the rest as a read-only mapping.
        """
        own = MappingProxyType(
            {key: value for key, value in table.items() if key not in COMMON_SINK_KEYS}
        )
        try:
            registered = self.sink_type(sink_type)
        except LookupError:
            return own
        except Exception as error:  # a plugin that fails to import: name it, in one line
            raise ConfigError(
                scope.key("type"),
                f"cannot load sink type {sink_type!r}: {type(error).__name__}: {error}",
            ) from None
        if registered.parse_options is None:
            return own
        return registered.parse_options(own, scope)


def sink_class(sink_type: str) -> type[Any]:
    """The class registered for ``sink_type`` now (:class:`LookupError` when none is)."""
    return SinkRegistry.installed().sink_class(sink_type)


def render_sink_options(options: object) -> dict[str, object]:
    """What ``check-config`` shows of a sink's options: their own ``render()``;
    else a mapping's (or a dataclass's fields') values with secrets masked."""
    if isinstance(options, RenderableOptions):
        return dict(options.render())
    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        options = dataclasses.asdict(options)
    if isinstance(options, Mapping):
        return cast(dict[str, object], mask_options(options))
    raise TypeError(f"sink options of type {type(options).__name__} cannot be rendered")


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
