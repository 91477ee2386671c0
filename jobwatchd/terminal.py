"""What the CLI shows on a terminal (with rich): live progress while waiting,
and tables for ``status`` and ``list``. Off a terminal the CLI prints plain
lines instead, and with ``--json`` JSON.

Every string from the daemon is shown through :func:`cell`: escaped by
:func:`jobwatchd.safetext.printable` and never parsed as rich markup."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from jobwatchd.client import JobProgress
from jobwatchd.safetext import printable

_STYLES = {
    "SUCCESS": "bold green",
    "FAIL": "bold red",
    "TIMEOUT": "bold red",
    "NOT_FOUND": "bold red",
    "ERROR": "bold red",
    "RUNNING": "cyan",
    "INIT": "yellow",
    "PENDING": "dim",
}


def cell(value: object, style: str = "") -> Text:
    """Untrusted ``value`` as literal text: control characters escaped, markup
    such as ``[/]`` or ``[link=...]`` shown as it is."""
    return Text(printable(value), style=style)


def status_text(status: object) -> Text:
    """A status, coloured by what it means."""
    return cell(status, _STYLES.get(status, "magenta") if isinstance(status, str) else "magenta")


def sub_jobs_cell(job: Mapping[str, Any]) -> str:
    """``done/total`` from a job object's entities ('' without sub-jobs)."""
    entities = job.get("entities") or {}
    subs = entities.get("sub_jobs") if isinstance(entities, dict) else None
    if not isinstance(subs, list) or not subs:
        return ""
    done = sum(
        1 for sub in subs if isinstance(sub, dict) and sub.get("status") in ("SUCCESS", "FAIL")
    )
    return printable(f"{done}/{entities.get('sub_jobs_total') or len(subs)}")


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{seconds:.1f}s"


class WaitProgress:
    """A live line per job: status, sub-jobs done/total, elapsed.

    Rendering happens on :meth:`refresh` (called from the event loop), never
    from a thread, so the progress objects are only touched by one thread.
    """

    def __init__(self, progress: Mapping[str, JobProgress], console: Console | None = None):
        self.progress = progress
        self.console = console or Console()
        self._spinners: dict[str, Spinner] = {}
        self._live = Live(
            console=self.console,
            auto_refresh=False,
            transient=True,
            get_renderable=self.render,
        )

    def __enter__(self) -> WaitProgress:
        self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._live.stop()

    def refresh(self) -> None:
        """Redraw now."""
        self._live.refresh()

    def render(self) -> RenderableType:
        """The table (unfinished jobs first when they do not all fit)."""
        now = time.monotonic()
        rows = list(self.progress.values())
        room = max(3, self.console.height - 3)
        hidden: list[JobProgress] = []
        if len(rows) > room:
            rows.sort(key=lambda p: p.terminal)
            rows, hidden = rows[: room - 1], rows[room - 1 :]
        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        table.add_column("", width=1)
        table.add_column("JOB")
        table.add_column("STATUS")
        table.add_column("SUB-JOBS", justify="right")
        table.add_column("DONE", justify="right")
        table.add_column("ELAPSED", justify="right")
        for item in rows:
            total = item.sub_total
            subs = "" if not total else f"{item.sub_done}/{total}"
            done = "" if item.percent is None else f"{item.percent:g}%"
            name = item.job_id
            if item.service and item.service != "ecs":
                name = f"{name} [{item.service}]"
            marker: RenderableType = (
                Text("✓" if item.status == "SUCCESS" else "✗")
                if item.terminal
                else self._spinners.setdefault(item.job_id, Spinner("dots"))
            )
            table.add_row(
                marker,
                cell(name),
                status_text(item.status),
                cell(subs),
                cell(done),
                _elapsed(item.elapsed(now)),
            )
        if not hidden:
            return table
        counts: dict[str, int] = {}
        for item in hidden:
            counts[item.status] = counts.get(item.status, 0) + 1
        summary = ", ".join(
            f"{count} {printable(status)}" for status, count in sorted(counts.items())
        )
        return Group(table, Text(f"… and {len(hidden)} more: {summary}", style="dim"))


def print_wait_results(console: Console, progress: Iterable[JobProgress]) -> None:
    """One line per job once the wait is over."""
    for item in progress:
        job = item.doc
        line = Text.assemble(
            cell(item.job_id, "bold"), " ", status_text(job.get("status", item.status))
        )
        subs = sub_jobs_cell(job)
        if subs:
            line.append(f" sub-jobs {subs}")
        if job.get("error_code") or job.get("fail_reason"):
            line.append(
                printable(f" error={job.get('error_code')} reason={job.get('fail_reason')!r}")
            )
        line.append(f" after {_elapsed(item.elapsed())}", style="dim")
        if item.cancelled:
            line.append(" (no longer tracked: cancelled)", style="yellow")
        elif not job.get("terminal"):
            line.append(" (still waiting: timed out)", style="yellow")
        console.print(line)


def print_job(console: Console, job: Mapping[str, Any]) -> None:
    """``status`` on a terminal: the job's fields, then its history."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("job", cell(job["job_id"]))
    table.add_row("status", status_text(job["status"]))
    subs = sub_jobs_cell(job)
    if subs:
        table.add_row("sub-jobs", cell(subs))
    for key in (
        "project_id",
        "account",
        "job_type",
        "begin_time",
        "end_time",
        "error_code",
        "fail_reason",
        "registered_at",
        "updated_at",
        "polls",
        "next_poll_at",
    ):
        value = job.get(key)
        if value is not None:
            table.add_row(key, cell(value))
    labels = job.get("labels") or {}
    if labels:
        table.add_row("labels", cell(", ".join(f"{k}={v}" for k, v in sorted(labels.items()))))
    error = job.get("last_error")
    if error:
        table.add_row(
            "last_error",
            cell(f"{error.get('code')} {error.get('message')} at {error.get('at')}", "yellow"),
        )
    console.print(table)
    history = job.get("history") or []
    if history:
        steps = Table(title="history", title_justify="left", box=None, pad_edge=False)
        steps.add_column("AT")
        steps.add_column("FROM")
        steps.add_column("TO")
        for step in history:
            steps.add_row(
                cell(step.get("at")),
                status_text(step.get("from")) if step.get("from") else Text("-"),
                status_text(step.get("to")),
            )
        console.print(steps)


def print_jobs(console: Console, jobs: Sequence[Mapping[str, Any]]) -> None:
    """``list`` on a terminal: one row per job."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("JOB", "STATUS", "TYPE", "SUB-JOBS", "LABELS", "UPDATED"):
        table.add_column(column, justify="right" if column == "SUB-JOBS" else "left")
    for job in jobs:
        labels = job.get("labels") or {}
        table.add_row(
            cell(job["job_id"]),
            status_text(job["status"]),
            cell(job.get("job_type") or ""),
            cell(sub_jobs_cell(job)),
            cell(",".join(f"{k}={v}" for k, v in sorted(labels.items()))),
            cell(job.get("updated_at") or ""),
        )
    console.print(table)
    console.print(Text(f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}", style="dim"))
