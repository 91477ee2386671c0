"""The alerting rules and the dashboard (deploy/): promtool checks and unit-tests
the rules, checks a live ``/metrics`` of a daemon with traffic, and every metric
the rules and the dashboard name is one the daemon exports."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML comes with mkdocs
from prometheus_client.parser import text_string_to_metric_families

from jobwatchd.models import TERMINAL_STATUSES
from jobwatchd.overdue import is_overdue, overdue_after
from tests.helpers import REPO
from tests.helpers.daemon import InProcessDaemon, running_daemon
from tests.helpers.servers import RunningSimulator
from tests.helpers.waiting import async_wait_until

ROOT = REPO
RULES = ROOT / "deploy" / "prometheus" / "jobwatchd-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "jobwatchd-rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "jobwatchd-dashboard.json"
METRIC_NAME = re.compile(r"\bjobwatchd_[a-zA-Z0-9_]+")
ACCOUNT = "default"  # the account of tests/helpers/config.write_config


@pytest.fixture(scope="module")
def promtool() -> str:
    """promtool's path; skipped (one line) only where it cannot be installed."""
    found = shutil.which("promtool")
    if found is not None:
        return found
    if os.geteuid() == 0:
        pytest.fail("promtool is missing: run `make system-tools` (installs prometheus)")
    pytest.skip("promtool is missing and installing it needs root (make system-tools)")


def run(promtool: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


ALERTS = [rule["alert"] for rule in rules()]


# -- the rules ---------------------------------------------------------------------


def test_promtool_checks_the_rules(promtool: str) -> None:
    result = run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_unit_tests_of_the_rules_pass(promtool: str) -> None:
    result = run(promtool, "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("alert", ALERTS)
def test_every_alert_has_for_severity_annotations_and_tests(alert: str) -> None:
    (rule,) = [rule for rule in rules() if rule["alert"] == alert]
    assert re.fullmatch(r"\d+[smh]", rule["for"]), rule
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    checks = [
        check
        for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for check in case["alert_rule_test"]
        if check["alertname"] == alert
    ]
    assert any(check["exp_alerts"] for check in checks), f"{alert}: no test where it fires"
    assert any(not check["exp_alerts"] for check in checks), f"{alert}: no test where it is quiet"


@pytest.mark.parametrize("alert", ALERTS)
def test_the_unit_tests_notice_an_alert_that_fires_too_early(
    promtool: str, alert: str, tmp_path: Path
) -> None:
    # The same rules with this alert's `for:` gone: its quiet checks must fail.
    loaded = yaml.safe_load(RULES.read_text())
    for group in loaded["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == alert:
                rule["for"] = "0s"
    (tmp_path / RULES.name).write_text(yaml.safe_dump(loaded))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = run(promtool, "test", "rules", str(tmp_path / RULE_TESTS.name))
    assert result.returncode != 0
    assert f"alertname: {alert}," in result.stdout + result.stderr


# -- a live daemon -----------------------------------------------------------------


def exported_names(text: str) -> set[str]:
    """The sample names of an exposition, with those a family without samples
    would have (a labelled counter no one has counted yet)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(sample.name for sample in family.samples)
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
        }.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    return names


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return found.value
    return None


async def scrape(running: InProcessDaemon) -> str:
    status, _, _ = await running.call("GET", "/readyz")
    assert status == 200
    async with running.session.get(running.url + "/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0
) -> None:
    """Wait until the async ``check`` holds (scrapes are requests, so
    :func:`async_wait_until` cannot make them)."""
    try:
        async with asyncio.timeout(timeout):
            while not await check():  # noqa: ASYNC110 (the condition is an HTTP request)
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout} s waiting for {what}")


async def with_traffic(running: InProcessDaemon) -> str:
    """Jobs polled through injected 5xx and 429 answers until they end: every
    kind of series has samples; the last scrape."""
    sim = running.sim.sim
    sim.faults.error_5xx = 0.2
    sim.faults.throttle = 0.1
    sim.faults.retry_after = 0.2
    # ~150 polls: a run without any 5xx or 429 among them is (0.9)^150 unlikely.
    ids = [sim.create_job("createServer", count=2, duration=60) for _ in range(30)]
    status, _, _ = await running.call("POST", "/v1/jobs", {"jobs": [{"job_id": i} for i in ids]})
    assert status == 201
    last: list[str] = []

    async def all_ended() -> bool:
        text = await scrape(running)
        last[:] = [text]
        ended = sum(
            sample(text, "jobwatchd_jobs", status=s) or 0.0 for s in sorted(TERMINAL_STATUSES)
        )
        throttled = sample(text, "jobwatchd_polls_total", account=ACCOUNT, outcome="throttled")
        return ended == len(ids) and bool(throttled)

    await eventually(all_ended, "every job ended, some polls throttled", timeout=60)
    return last[0]


async def test_live_metrics_pass_promtool_check_metrics(
    promtool: str, tmp_path: Path, simulator: RunningSimulator
) -> None:
    async with running_daemon(tmp_path, simulator) as running:
        text = await with_traffic(running)
    assert sample(text, "jobwatchd_polls_total", account=ACCOUNT, outcome="transient")
    assert sample(text, "jobwatchd_upstream_errors_total", account=ACCOUNT, http_status="429")
    result = run(promtool, "check", "metrics", stdin=text.encode())
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""  # no lint finding either


def expressions(node: Any) -> Iterator[str]:
    """Every PromQL expression in a dashboard: the panels' targets (rows
    included) and the variables' queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if (key in {"expr", "definition"} and isinstance(value, str)) or (
                key == "query" and isinstance(value, str) and "(" in value
            ):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


async def test_dashboard_and_rules_name_only_metrics_the_daemon_exports(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    async with running_daemon(tmp_path, simulator) as running:
        names = exported_names(await with_traffic(running))
    assert {"jobwatchd_jobs_overdue", "jobwatchd_polls_total"} <= names
    dashboard = json.loads(DASHBOARD.read_text())
    found = list(expressions(dashboard["panels"])) + list(expressions(dashboard["templating"]))
    assert len(found) > 20
    for expr in [*found, *(rule["expr"] for rule in rules())]:
        used = set(METRIC_NAME.findall(expr))
        assert used, f"no jobwatchd metric in {expr!r}"
        assert used <= names, f"{sorted(used - names)} not exported (in {expr!r})"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    shown = {name for p in panels for t in p["targets"] for name in METRIC_NAME.findall(t["expr"])}
    for wanted in (
        "jobwatchd_jobs",
        "jobwatchd_polls_total",
        "jobwatchd_upstream_errors_total",
        "jobwatchd_account_paused_seconds",
        "jobwatchd_sink_backlog_events",
        "jobwatchd_sink_lag_seconds",
        "jobwatchd_sink_dead_letters_total",
        "jobwatchd_store_write_failures_total",
        "jobwatchd_event_loop_lag_seconds",
        "jobwatchd_poll_duration_seconds_bucket",
        "jobwatchd_jobs_overdue",
    ):
        assert wanted in shown, f"the dashboard shows no {wanted}"


def test_dashboard_takes_its_data_source_from_a_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


# -- the overdue gauge on a live daemon ---------------------------------------------


async def overdue_and_begun(running: InProcessDaemon) -> tuple[float | None, float | None]:
    text = await scrape(running)
    return (
        sample(text, "jobwatchd_jobs_overdue", account=ACCOUNT),
        sample(text, "jobwatchd_jobs_begun", account=ACCOUNT),
    )


async def counts_are(running: InProcessDaemon, want: tuple[float, float]) -> bool:
    return await overdue_and_begun(running) == want


async def test_a_job_past_its_types_p95_is_counted_overdue(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    sim = simulator.sim
    async with running_daemon(tmp_path, simulator) as running:
        tracker = running.daemon.tracker
        assert tracker is not None
        # Six resizeServer jobs of 0.6 s (60 simulated seconds) teach its model.
        learned = [sim.create_job("resizeServer", duration=60) for _ in range(6)]
        await running.call("POST", "/v1/jobs", {"jobs": [{"job_id": i} for i in learned]})
        await async_wait_until(
            lambda: not tracker.active and tracker.duration_model("resizeServer") is not None,
            what="the six jobs ended",
        )
        model = tracker.duration_model("resizeServer")
        assert model is not None and model.ready
        assert await overdue_and_begun(running) == (0, 0)
        # One of that type runs 60 s; one of a type without a model as long.
        stuck = sim.create_job("resizeServer", duration=6000)
        unknown = sim.create_job("deleteServer", duration=6000)
        await running.call("POST", "/v1/jobs", {"jobs": [{"job_id": stuck}, {"job_id": unknown}]})
        await eventually(lambda: counts_are(running, (1, 2)), "one overdue job of two begun")
    # Restarted, the daemon restores both jobs and the model: still one overdue.
    async with running_daemon(tmp_path, simulator) as restarted:
        restored = restarted.daemon.tracker
        assert restored is not None
        await eventually(lambda: counts_are(restarted, (1, 2)), "one overdue job of two restored")
        # What the index counts is what checking every active job says.
        now = time.time()
        by_hand = [
            job.job_id
            for job in restored.active.values()
            if job.job_type
            and is_overdue(job.began_at, overdue_after(restored.duration_model(job.job_type)), now)
        ]
        assert by_hand == [stuck]
        status, _, _ = await restarted.call("DELETE", f"/v1/jobs/{stuck}")
        assert status in {200, 204}
        assert await overdue_and_begun(restarted) == (0, 1)
