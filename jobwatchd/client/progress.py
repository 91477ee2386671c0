"""What a wait knows about one job while it waits (for live progress views)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jobwatchd.client.types import Job
from jobwatchd.models import JOB_TRANSITION, SUBJOB_TRANSITION, is_terminal


@dataclass(slots=True)
class JobProgress:
    """One job of a wait: its status and sub-jobs as last seen, and how long it took."""

    job_id: str
    started: float
    status: str = "?"
    terminal: bool = False
    sub_total: int | None = None
    sub_status: dict[str, str] = field(default_factory=dict)
    percent: float | None = None
    """The percentage done upstream last reported (its format having one)."""
    service: str | None = None
    ended: float | None = None
    job: Job | None = None
    """The latest job read from the daemon."""
    final: bool = False
    """``job`` is terminal (or the wait is over) and will not change any more."""
    cancelled: bool = False
    """The daemon stopped tracking the job during the wait."""

    @property
    def doc(self) -> Mapping[str, Any]:
        """The latest job object as the daemon sent it (or what is known of it)."""
        if self.job is not None:
            return self.job.raw
        return {"job_id": self.job_id, "status": self.status}

    @property
    def sub_done(self) -> int:
        """Sub-jobs in a terminal status."""
        return sum(1 for status in self.sub_status.values() if is_terminal(status))

    def elapsed(self, now: float | None = None) -> float:
        """Seconds waited for this job (frozen once it ended)."""
        end = self.ended if self.ended is not None else (now or time.monotonic())
        return max(0.0, end - self.started)

    def _entities(self, entities: object) -> None:
        if not isinstance(entities, dict):
            return
        total = entities.get("sub_jobs_total")
        subs = entities.get("sub_jobs")
        if isinstance(subs, list):
            for index, sub in enumerate(subs):
                if isinstance(sub, dict) and isinstance(sub.get("status"), str):
                    key = str(sub.get("job_id") or f"#{index}")
                    self.sub_status[key] = sub["status"]
            if total is None:
                total = len(subs)
        if isinstance(total, int):
            self.sub_total = total

    def update_job(self, job: Job) -> None:
        """Take a job read from the daemon."""
        self.job = job
        self.status = job.status
        self.service = job.service
        if job.percent is not None:
            self.percent = job.percent
        self._entities(job.raw.get("entities"))
        if job.terminal:
            self.mark_ended()

    def update_event(self, event_type: str, data: Mapping[str, Any]) -> None:
        """Take the data of a transition event of this job or of one of its sub-jobs."""
        if event_type == JOB_TRANSITION:
            self.status = str(data.get("to"))
            self._entities(data.get("entities"))
            percent = data.get("progress")
            if isinstance(percent, int | float) and not isinstance(percent, bool):
                self.percent = float(percent)
            total = data.get("sub_jobs_total")
            if isinstance(total, int):
                self.sub_total = total
            if data.get("terminal") is True:
                self.mark_ended()
        elif event_type == SUBJOB_TRANSITION:
            self.sub_status[str(data.get("job_id"))] = str(data.get("to"))

    def mark_ended(self) -> None:
        """The job ended (or stopped being tracked) now."""
        self.terminal = True
        if self.ended is None:
            self.ended = time.monotonic()
