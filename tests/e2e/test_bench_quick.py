"""Smoke test of the benchmark suite: ``python -m bench --quick`` runs every scenario
(simulator, daemons, reference clients and webhook receiver as real processes)
and writes the report, its charts and the raw results. No threshold is asserted:
the figures of a quick run on a shared machine mean little; that the suite runs
and reports does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

SECTIONS = (
    "## Machine",
    "## Targets",
    "## 1. Poll throughput ceiling",
    "## Profile of the throughput scenario",
    "## 2. Scale",
    "## 3. Poll efficiency",
    "## 4. End to end",
    "## 5. Fleet throughput (PostgreSQL)",
)
CHARTS = ("throughput.png", "profile.png", "scale.png", "efficiency.png", "e2e.png", "fleet.png")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(300)
def test_quick_mode_writes_the_report_and_charts(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = (tmp_path / "BENCHMARKS.md").read_text()
    for section in SECTIONS:
        assert f"\n{section}\n" in report, f"missing section {section!r}"
    assert "python -m bench --quick" in report
    assert "**Scenario" not in report, "a scenario failed"
    for chart in CHARTS:
        path = tmp_path / "bench" / chart
        assert path.read_bytes()[:8] == PNG_MAGIC, chart
        assert f"(bench/{chart})" in report, f"{chart} is not shown in the report"
    results = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert results["mode"] == "quick"
    assert not results["errors"]
    assert {"s1", "s2", "s3", "s4", "s5"} <= set(results)
    verdicts = {target["scenario"] for target in results["targets"]}
    assert verdicts == {"1", "2", "3", "4"}
    assert (tmp_path / "bench" / "profile-throughput.txt").stat().st_size > 0
