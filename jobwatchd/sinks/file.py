"""The ``file`` sink: one CloudEvent JSON object per line, appended to a file."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from jobwatchd.config import SinkConfig
from jobwatchd.sinks import Delivery, SinkContext

FSYNC_POLICIES = ("always", "batch", "never")


class FileSink:
    """Appends events to ``path``; reopened on SIGHUP so logrotate can move the file.

    ``fsync``: ``always`` syncs after each event, ``batch`` once per delivered
    batch (the default), ``never`` leaves it to the OS.
    """

    def __init__(self, config: SinkConfig, context: SinkContext) -> None:
        self.name = config.name
        raw_path = Path(str(config.options["path"]))
        self.path = raw_path if raw_path.is_absolute() else context.state_dir / raw_path
        self.fsync = str(config.options.get("fsync", "batch"))
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
