"""The test tree's layout: fixtures live in conftest.py, everything else the
tests share lives in tests/helpers/, so no module imports from conftest (nor
from another test module)."""

from __future__ import annotations

import ast

import pytest

from tests.helpers import REPO

TESTS = REPO / "tests"


def _reaches_into_a_test(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    return last == "conftest" or last.startswith("test_")


def forbidden_imports(source: str) -> list[str]:
    """The imports in ``source`` that reach into a conftest or a test module,
    each as ``line: module``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            joint = "" if base.endswith(".") else "."
            modules = [base] + [f"{base}{joint}{alias.name}" for alias in node.names]
        else:
            continue
        found += [f"{node.lineno}: {module}" for module in modules if _reaches_into_a_test(module)]
    return found


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from tests.conftest import write_config", ["1: tests.conftest"]),
        ("import tests.conftest", ["1: tests.conftest"]),
        ("from tests import conftest", ["1: tests.conftest"]),
        ("from . import conftest", ["1: .conftest"]),
        ("from .conftest import http", ["1: .conftest"]),
        ("from tests.system.conftest import box", ["1: tests.system.conftest"]),
        ("x = 1\nfrom tests.test_api import Api", ["2: tests.test_api"]),
        ("def f():\n    from tests.conftest import http", ["2: tests.conftest"]),
        ("from tests.helpers.config import write_config", []),
        ("from tests.helpers import pg", []),
        ("from tests.system.box import Box", []),
        ("from jobwatchd.config import load_config", []),
        ("import pytest", []),
    ],
)
def test_forbidden_imports_are_found(source: str, expected: list[str]) -> None:
    assert forbidden_imports(source) == expected


def test_no_module_imports_from_conftest_or_a_test_module() -> None:
    modules = sorted(TESTS.rglob("*.py"))
    assert TESTS / "helpers" / "daemon.py" in modules  # the scan sees the helpers too
    offenders = {
        str(path.relative_to(TESTS)): found
        for path in modules
        if (found := forbidden_imports(path.read_text()))
    }
    assert offenders == {}, "use tests/helpers/ (fixtures stay in conftest.py)"
