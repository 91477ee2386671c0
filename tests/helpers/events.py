"""Reading the file sink's CloudEvents and the daemon's job list, and checking them."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import orjson

from jobwatchd.cloud.simulator import Simulator
from tests.helpers.daemon import DaemonProcess
from tests.helpers.http import http

TERMINAL_STATUSES = frozenset({"SUCCESS", "FAIL", "TIMEOUT", "NOT_FOUND", "ERROR"})


def read_events(path: Path) -> list[dict[str, Any]]:
    """The CloudEvents of a file sink (complete lines only)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    return [orjson.loads(line) for line in complete.splitlines() if line]


def job_chains(events: list[dict[str, Any]]) -> dict[str, list[tuple[Any, Any]]]:
    """(from, to) per subject, first occurrence of each event id only, in file order."""
    seen: set[str] = set()
    chains: dict[str, list[tuple[Any, Any]]] = {}
    for event in events:
        if event["id"] in seen:
            continue
        seen.add(event["id"])
        data = event["data"]
        chains.setdefault(event["subject"], []).append((data["from"], data["to"]))
    return chains


def assert_chain_consistent(chain: list[tuple[Any, Any]], subject: str) -> None:
    """First ``from`` is null and every ``from`` is the previous ``to``."""
    assert chain, f"no events for {subject}"
    assert chain[0][0] is None, f"{subject}: first event must have from=null: {chain}"
    for (_, previous_to), (current_from, _) in itertools.pairwise(chain):
        assert current_from == previous_to, f"{subject}: broken chain {chain}"


def job_statuses(daemon: DaemonProcess) -> dict[str, str]:
    """Every tracked job's status, following the list cursor."""
    statuses: dict[str, str] = {}
    after = ""
    while True:
        status, body, _ = http("GET", f"{daemon.url}/v1/jobs?limit=1000{after}")
        assert status == 200, body
        statuses.update((job["job_id"], job["status"]) for job in body["jobs"])
        if body["next"] is None:
            return statuses
        after = f"&after={body['next']}"


def all_terminal(daemon: DaemonProcess, job_ids: list[str]) -> bool:
    """Whether the daemon tracks every one of ``job_ids`` in a terminal status."""
    statuses = job_statuses(daemon)
    return all(statuses.get(job_id) in TERMINAL_STATUSES for job_id in job_ids)


def check_against_simulator(events: list[dict[str, Any]], sim: Simulator, jobs: list[str]) -> None:
    """Each job and sub-job: a consistent chain ending where the simulator ended."""
    chains = job_chains(events)
    for job_id in jobs:
        for transition in sim.transitions(job_id):
            assert_chain_consistent(chains[transition.job_id], transition.job_id)
        last = sim.transitions(job_id)[-1]
        assert chains[job_id][-1][1] == last.to
