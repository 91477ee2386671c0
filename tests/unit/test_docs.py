"""The README's short service install is the operations page's, line for line
(the system test runs the page's; a service check runs the README's)."""

from __future__ import annotations

import re

from tests.helpers import REPO


def _sh_blocks(text: str) -> list[list[str]]:
    return [block.strip().splitlines() for block in re.findall(r"```sh\n(.*?)```", text, re.S)]


def _block_with(blocks: list[list[str]], needle: str) -> list[str]:
    (found,) = [block for block in blocks if any(needle in line for line in block)]
    return found


def test_the_readme_installs_the_service_as_the_operations_page_does() -> None:
    readme = _sh_blocks((REPO / "README.md").read_text())
    operations = _sh_blocks((REPO / "docs" / "operations.md").read_text())
    needle = "systemctl enable --now jobwatchd"
    assert _block_with(readme, needle) == _block_with(operations, needle)


def test_the_readme_log_pipelines_are_the_operations_pages() -> None:
    def pipelines(text: str) -> list[str]:
        return re.findall(r"^journalctl -u jobwatchd -o cat.*\| *jq .*$", text, re.M)

    readme = pipelines((REPO / "README.md").read_text())
    assert readme
    assert set(readme) <= set(pipelines((REPO / "docs" / "operations.md").read_text()))
