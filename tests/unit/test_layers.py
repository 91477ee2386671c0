"""The package's layers import only downward (docs/architecture.md), and every
module has its place in them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGE = REPO / "jobwatchd"

# Lowest first. A module may import from its own layer and the ones below it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "leaves",
        (
            "jobwatchd",
            "models",
            "safetext",
            "logs",
            "systemd",
            "metrics",
            "net",
            "options",
            "client",
        ),
    ),
    (
        "pure core",
        (
            "statemachine",
            "outcome",
            "policy",
            "backoff",
            "ratelimit",
            "learning",
            "overdue",
            "events",
            "validation",
            "services",
        ),
    ),
    ("store and sinks", ("store", "sinks")),
    ("config", ("config",)),
    ("cloud", ("cloud",)),
    ("engine", ("engine",)),
    ("http", ("http",)),
    ("daemon", ("daemon",)),
    ("cli", ("cli", "terminal", "__main__")),
]


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """The rank of ``module`` (``jobwatchd.x.y``) in LAYERS."""
    name = module.removeprefix("jobwatchd.") if module != "jobwatchd" else "jobwatchd"
    top = name.split(".")[0]
    for rank, (_, members) in enumerate(LAYERS):
        if name in members or top in members:
            return rank
    raise AssertionError(f"{module} has no layer: add it to LAYERS in tests/unit/test_layers.py")


def imports_of(path: Path) -> set[str]:
    """The jobwatchd modules ``path`` imports (at any depth of its code)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "jobwatchd":
                found |= {f"jobwatchd.{a.name}" for a in node.names if a.name != "__version__"}
                found.add("jobwatchd")
            elif node.module.startswith("jobwatchd."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("jobwatchd")}
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[_module(p) for p in MODULES])
def test_a_module_imports_only_its_layer_and_below(path: Path) -> None:
    module = _module(path)
    rank = layer_of(module)
    upward = sorted(
        f"{name} ({LAYERS[layer_of(name)][0]})"
        for name in imports_of(path)
        if layer_of(name) > rank
    )
    assert upward == [], f"{module} ({LAYERS[rank][0]}) imports from above: {upward}"


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from jobwatchd.daemon import Daemon\nfrom jobwatchd.models import JobRecord\n")
    assert imports_of(bad) == {"jobwatchd.daemon", "jobwatchd.models"}
    assert layer_of("jobwatchd.daemon") > layer_of("jobwatchd.statemachine")
    with pytest.raises(AssertionError, match="has no layer"):
        layer_of("jobwatchd.nowhere")
