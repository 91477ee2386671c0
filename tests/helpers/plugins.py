"""Installing a third-party sink for a test: a module and its entry point on ``sys.path``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from jobwatchd.sinks import ENTRY_POINT_GROUP


@contextmanager
def sink_plugin(
    directory: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    module: str,
    source: str,
    entries: dict[str, str],
) -> Iterator[None]:
    """Make ``module`` (with ``source``) importable from ``directory`` and register
    ``entries`` (type name → ``module:attribute``) under the sinks' entry-point
    group, as an installed distribution would; the module is forgotten afterwards."""
    (directory / f"{module}.py").write_text(source)
    dist = directory / f"{module}-1.0.dist-info"
    dist.mkdir()
    name = module.replace("_", "-")
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "".join(f"{entry} = {target}\n" for entry, target in entries.items())
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")
    monkeypatch.syspath_prepend(str(directory))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.modules.pop(module, None)
