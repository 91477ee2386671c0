"""The ``file`` sink: one CloudEvent JSON object per line, appended to a file."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, Literal, get_args

from jobwatchd.options import expect_choice, field_defaults
from jobwatchd.sinks import Delivery, OptionScope, SinkConfig, SinkContext

FsyncPolicy = Literal["always", "batch", "never"]
FSYNC_POLICIES: Final[tuple[FsyncPolicy, ...]] = get_args(FsyncPolicy)


@dataclass(frozen=True, slots=True, kw_only=True)
class FileOptions:
    """``path`` (required; relative to the state directory) and ``fsync``.

    ``fsync``: ``always`` syncs after each event, ``batch`` once per delivered
    batch, ``never`` leaves it to the OS.
    """

    path: Path
    """Absolute once parsed; a relative path given directly starts at the state directory."""
    fsync: FsyncPolicy = "batch"

    @classmethod
    def parse(cls, table: Mapping[str, object], scope: OptionScope) -> FileOptions:
        """The options of a ``file`` sink table."""
        scope.check_keys(table, ("path", "fsync"))
        defaults = field_defaults(cls)
        path = scope.context.path(scope.required(table, "path"), scope.key("path"), scope.state_dir)
        fsync = expect_choice(
            table.get("fsync", defaults["fsync"]), scope.key("fsync"), FSYNC_POLICIES
        )
        return cls(path=path, fsync=fsync)

    def render(self) -> dict[str, object]:
        """As written in TOML."""
        return {"path": str(self.path), "fsync": self.fsync}


class FileSink:
    """Appends events to ``path``; reopened on SIGHUP so logrotate can move the file."""

    parse_options = FileOptions.parse

    def __init__(self, config: SinkConfig, context: SinkContext) -> None:
        options = config.options
        if not isinstance(options, FileOptions):
            raise TypeError(f"file sink {config.name!r}: options must be FileOptions")
        self.name = config.name
        self.path = options.path if options.path.is_absolute() else context.state_dir / options.path
        self.fsync: FsyncPolicy = options.fsync
        self._file: BinaryIO | None = None
        self._lock = asyncio.Lock()  # a reopen must not close the file under a write

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 - kept open across batches

    async def start(self) -> None:
        """Open the file for appending."""
        await asyncio.to_thread(self._open)

    def _write(self, batch: Sequence[Delivery]) -> None:
        if self._file is None:
            self._open()
        handle = self._file
        assert handle is not None
        for item in batch:
            handle.write(item.event.payload + b"\n")
            if self.fsync == "always":
                handle.flush()
                os.fsync(handle.fileno())
        handle.flush()
        if self.fsync == "batch":
            os.fsync(handle.fileno())

    async def deliver(self, batch: Sequence[Delivery]) -> None:
        """Append the batch (in a thread: disks can be slow)."""
        async with self._lock:
            await asyncio.to_thread(self._write, batch)

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    async def reopen(self) -> None:
        """Close and reopen ``path`` (after a rotation)."""
        async with self._lock:
            await asyncio.to_thread(self._close)
            await asyncio.to_thread(self._open)

    async def close(self) -> None:
        """Close the file."""
        async with self._lock:
            await asyncio.to_thread(self._close)
