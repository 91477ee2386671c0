"""docs/BENCHMARKS.md and its charts, from one run's results."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import orjson

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench import s1_throughput as s1
from bench import s2_scale as s2
from bench import s3_efficiency as s3
from bench import s4_e2e as s4
from bench import s5_fleet as s5
from bench.common import Machine, fmt, median
from bench.profiling import Profile
from jobwatchd import learning
from jobwatchd.learning import DurationModel

GIB_MIB = 1024.0
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
HEADINGS: dict[str, tuple[str, ...]] = {
    "s1": ("## 1. Poll throughput ceiling", "## Profile of the throughput scenario"),
    "s2": ("## 2. Scale",),
    "s3": ("## 3. Poll efficiency",),
    "s4": ("## 4. End to end",),
    "s5": ("## 5. Fleet throughput (PostgreSQL)",),
}
"""The report's section(s) of each scenario."""
PROVENANCE = "*From the "


@dataclass
class Kept:
    """A scenario not run this time: its results and sections as the last run wrote them."""

    info: dict[str, str]  # command, mode, started of the run that measured it
    data: dict[str, Any] | None  # its entry of results.json
    sections: list[str]  # its lines of BENCHMARKS.md (without the provenance line)
    targets: list[Target]
    error: str | None
    machine: dict[str, Any] | None


@dataclass
class Run:
    """Everything one run of the suite produced."""

    command: str
    mode: str
    started: str
    seconds: float
    machine: Machine
    s1: s1.Result | None = None
    s2: s2.Result | None = None
    s3: s3.Result | None = None
    s4: s4.Result | None = None
    s5: s5.Result | None = None
    errors: dict[str, str] = field(default_factory=dict)
    kept: dict[str, Kept] = field(default_factory=dict)
    """Scenarios not run this time, carried over from the previous report."""

    @property
    def info(self) -> dict[str, str]:
        """Which run this is (stored with each scenario's results)."""
        return {"command": self.command, "mode": self.mode, "started": self.started}


def provenance(info: dict[str, str]) -> str:
    """The line under a section's heading naming the run it comes from."""
    return (
        f"{PROVENANCE}{info.get('mode', '?')} run started {info.get('started', '?')}: "
        f"`{info.get('command', '?')}`.*"
    )


def _split_sections(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line, [])
        if current is not None:
            current.append(line)
    for lines in sections.values():
        if len(lines) > 2 and lines[1] == "" and lines[2].startswith(PROVENANCE):
            del lines[1:3]
        while lines and not lines[-1].strip():
            lines.pop()
    return sections


def load_kept(out: Path, keys: Iterable[str]) -> dict[str, Kept]:
    """The scenarios ``keys`` as the previous report in ``out`` has them (when it has)."""
    report_path, results_path = out / "BENCHMARKS.md", out / "bench" / "results.json"
    if not report_path.exists() or not results_path.exists():
        return {}
    previous: dict[str, Any] = orjson.loads(results_path.read_bytes())
    sections = _split_sections(report_path.read_text())
    top = {k: str(previous.get(k, "?")) for k in ("command", "mode", "started")}
    kept: dict[str, Kept] = {}
    for key in keys:
        data = previous.get(key)
        error = previous.get("errors", {}).get(key)
        if data is None and error is None:
            continue
        info = dict(data.get("run", top)) if isinstance(data, dict) else top
        lines: list[str] = []
        for heading in HEADINGS[key]:
            if heading in sections:
                lines += [*sections[heading], ""]
        number = key[1:]
        kept[key] = Kept(
            info=info,
            data=data,
            sections=lines,
            targets=[
                Target(t["scenario"], t["target"], t["measured"], t["met"])
                for t in previous.get("targets", [])
                if t.get("scenario") == number
            ],
            error=error,
            machine=previous.get("machine"),
        )
    return kept


@dataclass
class Target:
    """One target of the issue with its measured figure."""

    scenario: str
    target: str
    measured: str
    met: bool | None  # None: not measured

    @property
    def verdict(self) -> str:
        """Met / missed / not measured."""
        if self.met is None:
            return "not measured"
        return "**met**" if self.met else "**missed**"


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


# ------------------------------------------------------------------- targets


def _restored(point: s2.Checkpoint) -> str:
    if not math.isnan(point.restore_seconds):
        return f"every job back in the schedule after {fmt(point.restore_seconds, 1)} s"
    return (
        f"only {point.restored:,} of {point.jobs:,} jobs back in the schedule "
        f"{fmt(point.restore_waited, 0)} s after the restart"
    )


def targets(run: Run) -> list[Target]:
    """Every target of the issue, with the measured figure beside it."""
    out: list[Target] = []
    if run.s1 is not None:
        summary = run.s1.summary()
        raw = summary.get(s1.RAW, {})
        sdk = summary.get(s1.SDK, {})
        for name in (s1.JW_AKSK, s1.JW_NONE):
            mine = summary.get(name, {})
            ratio = _ratio(mine.get("polls_per_second", math.nan), raw.get("polls_per_second", 0))
            per_cpu = _ratio(raw.get("cpu_per_1000", math.nan), mine.get("cpu_per_1000", 0))
            out.append(
                Target(
                    "1",
                    f"{name} reaches >= 0.7x the raw aiohttp loop's polls/s",
                    f"{fmt(mine.get('polls_per_second', math.nan), 0)} vs "
                    f"{fmt(raw.get('polls_per_second', math.nan), 0)} polls/s = "
                    f"**{fmt(ratio, 2)}x** (per CPU second: {fmt(per_cpu, 2)}x)",
                    None if math.isnan(ratio) else ratio >= 0.7,
                )
            )
        mine = summary.get(s1.JW_AKSK, {})
        cpu_ratio = _ratio(mine.get("cpu_per_1000", math.nan), sdk.get("cpu_per_1000", 0))
        out.append(
            Target(
                "1",
                f"{s1.JW_AKSK} uses a fraction of the SDK's CPU per poll",
                f"{fmt(mine.get('cpu_per_1000', math.nan), 3)} vs "
                f"{fmt(sdk.get('cpu_per_1000', math.nan), 3)} CPU s per 1,000 polls = "
                f"**{fmt(cpu_ratio, 2)}x**",
                None if math.isnan(cpu_ratio) else cpu_ratio < 1.0,
            )
        )
    else:
        out.append(Target("1", "throughput targets", run.errors.get("s1", "not run"), None))
    if run.s2 is not None and run.s2.checkpoints:
        biggest = max(run.s2.checkpoints, key=lambda c: c.jobs)
        full = biggest.jobs >= 1_000_000
        scope = "" if full else f" (measured at {biggest.jobs:,} jobs only, not 1,000,000)"
        rss = max(
            (v for v in (biggest.rss_mib, biggest.rss_after_restore_mib) if not math.isnan(v)),
            default=math.nan,
        )
        out.append(
            Target(
                "2",
                "1,000,000 jobs in under 1 GiB RSS",
                f"**{fmt(rss, 0)} MiB** (peak {fmt(biggest.hwm_mib, 0)} MiB){scope}",
                (rss < GIB_MIB) if full else None,
            )
        )
        rate = biggest.rate
        out.append(
            Target(
                "2",
                "batch registration at >= 20,000 jobs/s",
                f"**{fmt(rate, 0)} jobs/s** up to {biggest.jobs:,} jobs "
                f"(median batch {fmt(median(biggest.batch_rates), 0)}/s)",
                rate >= 20_000,
            )
        )
        ready = median(biggest.ready_seconds)
        out.append(
            Target(
                "2",
                "ready within 10 s after kill -9 with 1,000,000 jobs (/readyz 200: the API "
                "serves, restored jobs are polled as they come back)",
                f"**{fmt(ready, 2)} s** (median of {len(biggest.ready_seconds)} restarts){scope}",
                (ready <= 10.0) if full and not math.isnan(ready) else None,
            )
        )
        back = biggest.restore_seconds
        out.append(
            Target(
                "2",
                "... the stricter reading: every one of the 1,000,000 jobs back in the "
                "schedule within 10 s",
                f"**{_restored(biggest)}**{scope}",
                (back <= 10.0) if full else None,
            )
        )
    else:
        out.append(Target("2", "scale targets", run.errors.get("s2", "not run"), None))
    if run.s3 is not None:
        summary = run.s3.summary()
        fixed, jw = summary.get(s3.FIXED, {}), summary.get(s3.JW, {})
        p95_ok = jw.get("lag_p95", math.inf) <= fixed.get("lag_p95", -math.inf)
        calls = _ratio(jw.get("calls_per_job", math.nan), fixed.get("calls_per_job", 0))
        out.append(
            Target(
                "3",
                "jobwatchd's p95 lag no worse than the fixed 10 s loop's",
                f"**{fmt(jw.get('lag_p95', math.nan))} s** vs "
                f"{fmt(fixed.get('lag_p95', math.nan))} s (simulated)",
                p95_ok if jw and fixed else None,
            )
        )
        out.append(
            Target(
                "3",
                "... with at most half its API calls",
                f"{fmt(jw.get('calls_per_job', math.nan))} vs "
                f"{fmt(fixed.get('calls_per_job', math.nan))} calls per job = **{fmt(calls, 2)}x**"
                + _oracle_beside(run.s3, fixed.get("calls_per_job", math.nan)),
                None if math.isnan(calls) else calls <= 0.5,
            )
        )
    else:
        out.append(Target("3", "efficiency targets", run.errors.get("s3", "not run"), None))
    if run.s4 is not None:
        e2e = run.s4.summary()
        rate = e2e["steady_rate"]
        out.append(
            Target(
                "4",
                "end to end at 1,000 transitions/s: p50 / p99 (no threshold set)",
                f"**{fmt(e2e['e2e_p50'] * 1000, 0)} / {fmt(e2e['e2e_p99'] * 1000, 0)} ms**"
                f" at {fmt(rate, 0)} transitions/s",
                rate >= 950 and not run.s4.missing,
            )
        )
    else:
        out.append(Target("4", "end to end", run.errors.get("s4", "not run"), None))
    kept = {key[1:] for key in run.kept}
    out = [t for t in out if t.scenario not in kept]
    for key in sorted(run.kept):
        out += run.kept[key].targets
    return sorted(out, key=lambda t: t.scenario)


# -------------------------------------------------------------------- charts


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def chart_throughput(result: s1.Result, path: Path) -> None:
    """Polls/s and CPU per 1,000 polls per contender."""
    summary = result.summary()
    names = list(summary)
    labels = [n.replace(" (", "\n(") for n in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    colors = ["#999999", "#1f77b4", "#6baed6", "#d62728"][: len(names)]
    left.bar(labels, [summary[n]["polls_per_second"] for n in names], color=colors)
    left.set_ylabel("polls per second (median)")
    left.set_title("Sustained polls/s, same simulator, same concurrency")
    right.bar(labels, [summary[n]["cpu_per_1000"] for n in names], color=colors)
    right.set_ylabel("client CPU seconds per 1,000 polls (median)")
    right.set_title("CPU cost per poll (lower is better)")
    for axis in (left, right):
        axis.tick_params(axis="x", labelsize=8)
    _save(fig, path)


def chart_profile(profile: Profile, path: Path) -> None:
    """Top functions by self time."""
    top = profile.self_top[:12][::-1]
    fig, axis = plt.subplots(figsize=(10, 5))
    total = max(profile.samples, 1)
    axis.barh([name[:80] for name, _ in top], [100 * count / total for _, count in top])
    axis.set_xlabel("% of non-idle samples (self time)")
    axis.set_title("jobwatchd (AK/SK) at its throughput ceiling: where the CPU goes")
    axis.tick_params(axis="y", labelsize=7)
    _save(fig, path)


def chart_scale(result: s2.Result, path: Path) -> None:
    """RSS, registration rate and restart times per size."""
    points = sorted(result.checkpoints, key=lambda c: c.jobs)
    labels = [f"{c.jobs:,}" for c in points]
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(13, 4))
    a.bar(labels, [p.rss_mib for p in points], label="after registration")
    a.plot(labels, [p.rss_after_restore_mib for p in points], "o", color="black", label="restored")
    a.axhline(GIB_MIB, color="red", linestyle="--", label="1 GiB target")
    a.set_ylabel("daemon RSS (MiB)")
    a.set_title("Memory")
    a.legend(fontsize=8)
    b.bar(labels, [p.rate for p in points])
    b.axhline(20_000, color="red", linestyle="--", label="20,000/s target")
    b.set_ylabel("jobs registered per second")
    b.set_title("Batch registration (10,000 per request)")
    b.legend(fontsize=8)
    c.bar(labels, [median(p.ready_seconds) for p in points], label="/readyz 200")
    c.plot(labels, [p.restore_seconds for p in points], "o", color="black", label="all jobs back")
    c.axhline(10, color="red", linestyle="--", label="10 s target")
    c.set_ylabel("seconds after kill -9")
    c.set_title("Restart")
    c.legend(fontsize=8)
    for axis in (a, b, c):
        axis.set_xlabel("registered active jobs")
    _save(fig, path)


S3_COLORS = {s3.FIXED: "#555555", s3.EXPO: "#ff7f0e", s3.JW: "#1f77b4", s3.JW_COLD: "#9ecae1"}


def chart_efficiency(result: s3.Result, path: Path) -> None:
    """Detection lag CDFs and API calls per job."""
    summary = result.summary()
    everything = [j for cohort in result.cohorts for j in cohort]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in summary:
        lags = sorted(result.lags(name, everything))
        if lags:
            ys = [(i + 1) / len(lags) for i in range(len(lags))]
            left.step(lags, ys, where="post", label=name, color=S3_COLORS.get(name))
    left.set_xscale("symlog", linthresh=10)
    left.set_xlabel("detection lag, simulated seconds (log scale past 10 s)")
    left.set_ylabel("fraction of jobs detected")
    left.axhline(0.95, color="grey", linestyle=":", linewidth=1)
    left.set_title("Time from the real end of a job to its detection")
    left.legend(fontsize=8)
    names = list(summary)
    right.bar(
        [n.replace(" (", "\n(") for n in names],
        [summary[n]["calls_per_job"] for n in names],
        color=[S3_COLORS.get(n, "#999999") for n in names],
    )
    right.set_ylabel("API calls per job (median over cohorts)")
    right.set_title("Polls spent")
    right.tick_params(axis="x", labelsize=8)
    _save(fig, path)


def chart_e2e(result: s4.Result, path: Path) -> None:
    """CDFs of end-to-end, detection and delivery latency."""
    fig, axis = plt.subplots(figsize=(8, 4.5))
    for label, values in (
        ("end to end (transition -> webhook ack)", result.end_to_end),
        ("detection (transition -> observed)", result.detection),
        ("delivery (observed -> webhook ack)", result.delivery),
    ):
        ordered = sorted(v * 1000 for v in values)
        if ordered:
            axis.step(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=label)
    axis.set_xlabel("milliseconds")
    axis.set_ylabel("fraction of transitions")
    axis.set_title(f"End to end at {result.steady_rate:,.0f} transitions/s")
    axis.legend(fontsize=8)
    _save(fig, path)


def chart_fleet(result: s5.Result, path: Path) -> None:
    """Aggregate polls/s and CPU per 1,000 polls (daemons, PostgreSQL, simulator) per size."""
    summary = result.summary()
    sizes = list(summary)
    labels = [f"{n} instance{'s' if n > 1 else ''}" for n in sizes]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.bar(labels, [summary[n]["polls_per_second"] for n in sizes], color="#1f77b4")
    left.set_ylabel("polls per second, all instances (median)")
    left.set_title("Fleet on one PostgreSQL: aggregate polls/s")
    bottom = [0.0] * len(sizes)
    for key, label, color in (
        ("cpu_per_1000", "daemons", "#1f77b4"),
        ("db_cpu_per_1000", "PostgreSQL", "#2ca02c"),
        ("sim_cpu_per_1000", "simulator", "#999999"),
    ):
        values = [summary[n][key] for n in sizes]
        right.bar(labels, values, bottom=bottom, label=label, color=color)
        bottom = [b + (0.0 if math.isnan(v) else v) for b, v in zip(bottom, values, strict=True)]
    right.set_ylabel("CPU seconds per 1,000 polls (median)")
    right.set_title("CPU cost per poll (lower is better)")
    right.legend(fontsize=8)
    _save(fig, path)


# -------------------------------------------------------------------- markdown


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _machine(run: Run) -> list[str]:
    m = run.machine
    libs = ", ".join(f"{k} {v}" for k, v in m.libraries.items())
    # The load after a run is mostly the suite's own processes (the fleet
    # scenario runs five); only the load before it says other work was running.
    busy = m.load_before[0] > 0.5 * max(m.cores, 1)
    lines = [
        "## Machine",
        "",
        *_table(
            ("", ""),
            [
                ("CPU", m.cpu_model),
                ("cores", str(m.cores)),
                ("memory", f"{m.memory_gib:.1f} GiB"),
                ("Python", m.python),
                ("kernel", m.kernel),
                ("libraries", libs),
                (
                    "load average (1 min) before / after",
                    f"{m.load_before[0]:.2f} / {m.load_after[0]:.2f}",
                ),
            ],
        ),
        "",
        "Every process (simulator, daemons, reference clients, webhook receiver, this",
        "suite) runs on this one machine and talks over 127.0.0.1, so they share its",
        "cores: a figure is what a contender achieves next to a simulator that needs",
        "CPU too.",
    ]
    if busy:
        lines += [
            "",
            "**The machine was busy with other work when this run started** (load average",
            "above half the cores): treat the figures as provisional; contenders measured in",
            "the same run remain comparable, since their windows interleave.",
        ]
    return lines


def _s1(result: s1.Result) -> list[str]:
    p = result.params
    summary = result.summary()
    raw = summary.get(s1.RAW, {})
    rows = []
    for name, values in summary.items():
        rows.append(
            (
                name,
                fmt(values["polls_per_second"], 0),
                fmt(_ratio(values["polls_per_second"], raw.get("polls_per_second", 0)), 2),
                fmt(values["cpu_per_1000"], 3),
                fmt(1000 / values["cpu_per_1000"], 0),
                fmt(values["cpu_share"], 2),
                fmt(values["sim_cpu_per_1000"], 3),
                str(int(values["repeats"])),
            )
        )
    lines = [
        "## 1. Poll throughput ceiling",
        "",
        f"{p.jobs:,} running jobs (`createServer`, 2 sub-jobs each) in one simulator",
        f"(speed 1); every contender polls them at concurrency {p.concurrency}, one",
        f"contender at a time (the others frozen with SIGSTOP), in windows of {p.window:g} s",
        f"after {p.warmup:g} s of warm-up, the order rotating over {p.repeats} repeat(s).",
        "Polls are counted by the simulator (job queries answered), CPU from",
        "`/proc/<pid>/stat` of the contender. Figures are medians over the repeats.",
        "Every scenario's simulator is the product's (`jobwatchd.cloud.simulator`), run on",
        "uvloop by `bench/simserver.py` so that it is less of a ceiling.",
        "",
        "- **raw aiohttp loop**: `bench/clients.py raw`, aiohttp on uvloop, GET and read",
        "  the body, nothing else: the ceiling of the stack jobwatchd is built on.",
        "- **jobwatchd**: the daemon as a separate process with `min_interval =",
        "  max_interval = 1ms`, no rate limit, a file sink; every job was observed once",
        "  before measuring, so a window is pure polling (parse, compare with the",
        "  previous snapshot, reschedule, metrics). Once signing every request with",
        '  AK/SK as against the real cloud, once with `auth = "none"`.',
        "- **jobwatchd (mixed services)**: the no-auth daemon again, polling as many",
        "  jobs spread evenly over every service of the catalogue, each at its own path",
        "  under the simulator's `/{service}` prefix and read in its own answer format",
        "  (two sub-jobs where the format has them).",
        "- **vendor SDK**: `huaweicloudsdkecs` `EcsClient.show_job` from as many",
        "  threads as the concurrency, one shared client (requests' pool sized to",
        "  match), AK/SK signing every request.",
        "",
        *_table(
            (
                "contender",
                "polls/s",
                "x raw",
                "CPU s / 1,000 polls",
                "polls per CPU second",
                "CPU cores used",
                "simulator CPU s / 1,000 polls",
                "repeats",
            ),
            rows,
        ),
        "",
        "![throughput](bench/throughput.png)",
        "",
    ]
    alone, mixed = summary.get(s1.JW_NONE), summary.get(s1.JW_MIXED)
    if alone and mixed:
        lines += [
            "Mixed services against ECS alone (the same daemon, no auth): CPU per poll",
            f"{fmt(_ratio(mixed['cpu_per_1000'], alone['cpu_per_1000']), 2)}x, polls per second",
            f"{fmt(_ratio(mixed['polls_per_second'], alone['polls_per_second']), 2)}x.",
            "",
        ]
    aksk = summary.get(s1.JW_AKSK)
    if aksk and raw:
        ratio = _ratio(aksk["polls_per_second"], raw["polls_per_second"])
        cpu_ratio = _ratio(aksk["cpu_per_1000"], raw["cpu_per_1000"])
        starved = min(aksk["cpu_share"], raw["cpu_share"]) < 0.85
        lines += [
            f"What limits it: the daemon spends {fmt(cpu_ratio, 1)}x the raw loop's CPU per poll",
            "(its bookkeeping: see the profile below). It runs one event loop, so it can",
            "use one core at most: at "
            f"{fmt(aksk['cpu_per_1000'], 3)} CPU s per 1,000 polls that caps it near",
            f"{fmt(1000 / aksk['cpu_per_1000'], 0)} polls/s, against "
            f"{fmt(1000 / raw['cpu_per_1000'], 0)} for the raw loop (the",
            '"polls per CPU second" column), whatever the simulator can serve. Measured:',
            f"{fmt(ratio, 2)}x the raw rate.",
        ]
        if starved:
            lines += [
                'In this run the contenders did not get a whole core each ("CPU cores used"',
                "well below 1: the machine was busy), so the rates are lower than they",
                "would be on an idle machine; CPU per poll, and polls per CPU second, are",
                "the figures that hold.",
            ]
        lines += [""]
    lines += [f"- {note}" for note in result.notes]
    return lines


def _profile_tables(
    profile: Profile, *, top: int = 15, cpu_per_poll_ms: float = math.nan
) -> list[str]:
    """By package, top functions by self and inclusive time, hottest lines.

    With ``cpu_per_poll_ms``, the inclusive table also estimates microseconds
    of CPU per poll (share of samples times the measured CPU per poll)."""
    total = max(profile.samples, 1)
    roots = ("main (", "cmd_run (", "run_daemon (", "<module> (")
    inclusive = [
        (n, c) for n, c in profile.inclusive_top if "jobwatchd/" in n and not n.startswith(roots)
    ]
    return [
        "By package (self time of the innermost Python frame):",
        "",
        *_table(
            ("package", "% of samples"),
            [(name, fmt(100 * count / total)) for name, count in profile.by_package],
        ),
        "",
        "Top functions by self time:",
        "",
        *_table(
            ("function", "% self"),
            [(f"`{name}`", fmt(100 * count / total)) for name, count in profile.self_top[:top]],
        ),
        "",
        "jobwatchd functions by inclusive time (the function and what it calls):",
        "",
        *(
            _table(
                ("function", "% inclusive"),
                [(f"`{name}`", fmt(100 * count / total)) for name, count in inclusive[:14]],
            )
            if math.isnan(cpu_per_poll_ms)
            else _table(
                ("function", "% inclusive", "est. CPU µs per poll"),
                [
                    (
                        f"`{name}`",
                        fmt(100 * count / total),
                        fmt(1000 * cpu_per_poll_ms * count / total, 0),
                    )
                    for name, count in inclusive[:14]
                ],
            )
        ),
        "",
        "Hottest lines (self time):",
        "",
        *_table(
            ("line", "% self"),
            [(f"`{name}`", fmt(100 * count / total)) for name, count in profile.self_lines[:10]],
        ),
        "",
    ]


def _profile(result: s1.Result) -> list[str]:
    profile = result.profile
    lines = ["## Profile of the throughput scenario", ""]
    if profile is None or profile.error:
        reason = "not taken" if profile is None else profile.error
        return [*lines, f"No profile: {reason}."]
    return [
        *lines,
        f"py-spy sampled `{s1.JW_AKSK}` at {profile.rate} Hz for {profile.seconds:g} s while",
        f"it polled at its ceiling (same setup as above): {profile.samples:,} non-idle samples",
        "(not a measured window: sampling slows the process a little). The collapsed",
        "stacks are in `docs/bench/profile-throughput.txt` (speedscope or",
        "flamegraph.pl read them).",
        "",
        *_profile_tables(
            profile,
            cpu_per_poll_ms=result.summary().get(s1.JW_AKSK, {}).get("cpu_per_1000", math.nan),
        ),
        "Reading it: py-spy charges time spent in C to the Python frame that called it,",
        "so `StreamWriter._write` is the `send()` of each request into the socket; on",
        "loopback the kernel delivers to the receiving socket inside that call. The raw",
        "loop pays it too. What the raw loop does not pay is the rest: signing",
        "(`AkSkAuth.apply`), building the URL, classifying the answer, comparing with the",
        "previous snapshot, rescheduling, and metrics.",
        "",
        "![profile](bench/profile.png)",
        "",
    ]


def _s2(result: s2.Result) -> list[str]:
    p = result.params
    rows = []
    for c in sorted(result.checkpoints, key=lambda c: c.jobs):
        rows.append(
            (
                f"{c.jobs:,}",
                fmt(c.rate, 0),
                fmt(median(c.batch_rates), 0),
                fmt(_ratio(c.registration_cpu, c.registration_seconds), 2),
                fmt(c.rss_mib, 0),
                fmt(c.hwm_mib, 0),
                f"{fmt(median(c.ready_seconds), 2)} ({len(c.ready_seconds)})",
                fmt(c.restore_seconds, 1)
                if not math.isnan(c.restore_seconds)
                else f"not all: {c.restored:,} after {fmt(c.restore_waited, 0)}",
                fmt(_ratio(c.restored, c.restore_waited), 0),
                fmt(c.rss_after_restore_mib, 0),
            )
        )
    lines = [
        "## 2. Scale",
        "",
        "The simulator creates the jobs first (`resizeServer`, running for a day) through",
        f"`POST /_sim/jobs` in batches of 10,000 ({fmt(result.simulator_create_rate, 0)} jobs/s;",
        f"simulator RSS {fmt(result.simulator_rss_mib, 0)} MiB). One daemon (default polling,",
        "default rate limit of 20 polls/s, a file sink) is filled through",
        "`POST /v1/jobs` in batches of 10,000, one request at a time, up to each size",
        f"in turn. At each size: RSS once registration settled; then {p.restarts} times `kill -9`",
        "and start again: seconds until `/readyz` answers 200 (the API serves and",
        "registers, and restored jobs are polled as they come back: the median is",
        "shown, with the number of restarts), and, on the last restart, until every job",
        "is back in the schedule (`active_jobs` = size), and RSS after that.",
        "",
        *_table(
            (
                "jobs",
                "registration jobs/s",
                "median batch jobs/s",
                "daemon CPU cores while registering",
                "RSS MiB",
                "peak RSS MiB",
                "ready after kill -9, s (restarts)",
                "all jobs back, s",
                "jobs back per s",
                "RSS restored, MiB",
            ),
            rows,
        ),
        "",
        "![scale](bench/scale.png)",
        "",
    ]
    biggest = max(result.checkpoints, key=lambda c: c.jobs, default=None)
    if biggest is not None:
        share = _ratio(biggest.registration_cpu, biggest.registration_seconds)
        lines += [
            "What limits registration: the daemon used "
            f"{fmt(share, 2)} CPU cores while registering",
            "(one event loop parses, validates and answers every job object; a SQLite",
            "thread inserts), so it is CPU-bound in the daemon; the profile below shows",
            "where. Readiness after a restart does not wait for the jobs: they are read",
            'back page by page while the API serves ("jobs back" columns).',
            "",
        ]
        small = min(result.checkpoints, key=lambda c: c.jobs)
        slow, fast = (
            _ratio(biggest.restored, biggest.restore_waited),
            _ratio(small.restored, small.restore_waited),
        )
        if not math.isnan(slow) and not math.isnan(fast) and slow < 0.5 * fast:
            lines += [
                f"Restoring gets slower as the table grows: {fmt(fast, 0)} jobs/s at "
                f"{small.jobs:,} jobs,",
                f"{fmt(slow, 0)} jobs/s at {biggest.jobs:,}. The restore reads pages of 5,000",
                "(`active_jobs_page`, jobwatchd/store/sqlite.py) in (updated_at, id) order",
                "off the `jobs_active` index, so a page should cost the same at any size:",
                "profile the restore (`Tracker.restore`) to see what grows.",
                "",
            ]
        profile = result.registration_profile
        if profile is not None and not profile.error:
            lines += [
                "Profile of registration (py-spy on a fresh daemon registering "
                f"{p.profile_jobs:,} more jobs",
                f"in batches of 10,000, {profile.seconds:g} s at {profile.rate} Hz, "
                f"{profile.samples:,} samples; not a",
                "measured figure). Stacks: `docs/bench/profile-registration.txt`.",
                "",
                *_profile_tables(profile, top=10),
            ]
        if biggest.jobs < 1_000_000:
            lines += [
                f"This run went up to {biggest.jobs:,} jobs; the 1,000,000-job targets are",
                "measured by the full run (`python -m bench`), not by `--quick`.",
                "",
            ]
    lines += [f"- {note}" for note in result.notes]
    return lines


def _s3(result: s3.Result) -> list[str]:
    p = result.params
    summary = result.summary()
    data = result.to_json()
    mix = [
        (
            kind.job_type,
            str(kind.count),
            fmt(kind.median, 0),
            fmt(kind.sigma, 2),
        )
        for kind in s3.JOB_MIX
    ]
    rows = []
    for name, v in summary.items():
        rows.append(
            (
                name,
                fmt(v["calls_per_job"]),
                fmt(v["lag_p50"]),
                fmt(v["lag_p95"]),
                fmt(v["lag_p99"]),
                fmt(v["pooled_p99"]),
                fmt(v["lag_max"]),
                str(int(v["not_detected"])),
            )
        )
    polling = s3.scaled_polling(p)
    lines = [
        "## 3. Poll efficiency",
        "",
        f"Time runs {p.speed:g}x faster in the simulator; every duration of the daemons'",
        "config and of the two reference strategies is divided by that factor",
        f"(jobwatchd: `initial_delay` {fmt(polling['initial_delay'], 3)} s, `min_interval`",
        f"{fmt(polling['min_interval'], 3)} s, `max_interval` {fmt(polling['max_interval'], 2)} s,"
        f" `target_lag` {fmt(polling['target_lag'], 2)} s of",
        f"wall time, the rate limit times {p.speed:g}). **Lags and calls below are in simulated",
        "seconds**, as they would be against the real cloud.",
        "",
        "Workload: job types drawn uniformly; each job's duration (creation to end, in",
        "simulated seconds) is log-normal around its type's median, and with probability",
        f"{s3.TAIL_PROBABILITY:g} multiplied by 1 + Pareto({s3.TAIL_ALPHA:g}) (a heavy tail), "
        f"capped at {p.max_duration:g} s:",
        "",
        *_table(("job type", "sub-jobs", "median s", "sigma of ln"), mix),
        "",
        f"Measured jobs: {data['jobs']} (median duration {fmt(data['duration_p50'], 0)} s, p95",
        f"{fmt(data['duration_p95'], 0)} s, longest {fmt(data['duration_max'], 0)} s), "
        f"in {p.repeats} cohort(s) of",
        f"{p.jobs_per_repeat} arriving as a Poisson process over {p.arrival_seconds:g} s of wall "
        "time each.",
        "Every job is tracked from its creation by all four at once:",
        "",
        "- **fixed 10 s loop**: query; while not finished, sleep 10 s and query again.",
        "- **SDK waiter**: query at once, then wait min 2 s, doubling up to max 120 s, each",
        "  wait drawn uniformly between the minimum and that (smithy / AWS SDK waiters).",
        "- **jobwatchd (default, learned)**: the daemon with its default `[polling]`",
        "  (`adaptive = true`). **Warm-up:** before the measured jobs,",
        f"  {p.warm_per_type} jobs of every type (drawn the same way, not counted) were "
        "registered with it,",
        f"  and measuring started once it had seen {p.warm_needed} of every type finish "
        f"({fmt(result.warmup_seconds, 1)} s of wall time);",
        "  the learned schedule needs five.",
        "- **jobwatchd cold (no model)**: `adaptive = false`, which is exactly what the",
        "  default does for a job type it has not seen finish five times yet: backoff",
        "  from `min_interval` by 1.6x to `max_interval`, reset on every transition.",
        "",
        "Detection lag = when the tracker observed the job's end (the daemon's",
        "CloudEvent `data.observed_at` in its file sink; the answer's arrival for the",
        "reference clients) minus the simulator's real transition time",
        '(`/_sim/jobs/{id}/transitions`). Figures are medians over the cohorts; "pooled',
        'p99" and "max" are over every measured job.',
        "",
        *_table(
            (
                "strategy",
                "API calls per job",
                "lag p50 s",
                "lag p95 s",
                "lag p99 s",
                "pooled p99 s",
                "max s",
                "not detected",
            ),
            rows,
        ),
        "",
        "![efficiency](bench/efficiency.png)",
        "",
    ]
    breakdown = data["breakdown"]
    warm = breakdown.get(s3.JW, {})
    cold = breakdown.get(s3.JW_COLD, {})
    if warm:
        measured = summary.get(s3.JW, {}).get("calls_per_job", math.nan)
        measured_cold = summary.get(s3.JW_COLD, {}).get("calls_per_job", math.nan)
        lines += [
            "Where jobwatchd's calls go: a replay of its schedule (its own",
            "`jobwatchd.backoff` and `jobwatchd.learning` functions, with the models it",
            "learned, on each measured job's real timeline; sub-job transitions, which only",
            "reset the backoff, are left out) gives these calls per job, checked against",
            "the measured total:",
            "",
            *_table(
                ("phase", "learned", "cold"),
                [
                    (phase, fmt(warm.get(phase, 0.0), 2), fmt(cold.get(phase, 0.0), 2))
                    for phase in s3.PHASES
                ]
                + [
                    (
                        "**total (replay)**",
                        fmt(sum(warm.values()), 2),
                        fmt(sum(cold.values()), 2),
                    ),
                    ("**total (measured)**", fmt(measured, 2), fmt(measured_cold, 2)),
                ],
            ),
            "",
        ]
        models = data.get("models_wall_seconds", {})
        if models:
            _, policy = s3._policies(p)
            model_rows = []
            for name, values in sorted(models.items()):
                model = DurationModel.from_json(values)
                opens, closes = model.window(policy)
                model_rows.append(
                    (
                        name,
                        fmt(model.count + model.tail_count, 0),
                        fmt(math.exp(model.mean) * p.speed, 0),
                        fmt(model.sigma, 2),
                        fmt(model.tail_share * 100, 1),
                        fmt(opens * p.speed, 0),
                        fmt(closes * p.speed, 0),
                    )
                )
            lines += [
                "The learned models (converted to simulated seconds): a log-normal body, and",
                "a slow tail learned apart (jobs more than "
                f"{learning.TAIL_Z:g} sigma above the body's mean). The",
                "schedule sleeps until its window opens (`target_lag` after the body's "
                f"{fmt(policy.early_mass * 100, 0)} %",
                "quantile), then polls every `target_lag` exactly until the "
                f"{fmt((1 - policy.late_mass) * 100, 0)} % quantile of",
                "body and tail together, then backs off.",
                "",
                *_table(
                    (
                        "job type",
                        "weight",
                        "body median s",
                        "body sigma",
                        "tail %",
                        "window opens s",
                        "closes s",
                    ),
                    model_rows,
                ),
                "",
            ]
        lines += _s3_oracle(result)
        lines += _s3_limits(result, warm, models)
    lines += [f"- {note}" for note in result.notes]
    return lines


def _oracle_beside(result: s3.Result, fixed_calls: float) -> str:
    """The oracle's bound at the fixed loop's p95, for the targets table."""
    bound = result.oracles.get(s3.ORACLE_FIXED)
    if bound is None or math.isnan(fixed_calls):
        return ""
    return (
        f'; the best schedule that learns only "still running" from a poll needs '
        f"{fmt(bound.calls_per_job, 2)} = {fmt(_ratio(bound.calls_per_job, fixed_calls), 2)}x "
        "(the oracle, section 3)"
    )


def _s3_oracle(result: s3.Result) -> list[str]:
    summary = result.summary()
    fixed, jw = summary.get(s3.FIXED, {}), summary.get(s3.JW, {})
    if not result.oracles or not fixed:
        return []
    fixed_calls = fixed.get("calls_per_job", math.nan)
    rows = []
    for name, oracle in result.oracles.items():
        per_type = ", ".join(
            f"{job_type} {fmt(one.calls, 1)} ({fmt(one.covered * 100, 0)} %)"
            for job_type, one in oracle.per_type.items()
        )
        rows.append(
            (
                f"oracle {name} ({fmt(oracle.lag)} s)",
                fmt(oracle.calls_per_job, 2),
                f"{fmt(_ratio(oracle.calls_per_job, fixed_calls), 2)}x",
                per_type,
            )
        )
    if jw:
        rows.append(
            (
                "jobwatchd (measured)",
                fmt(jw.get("calls_per_job", math.nan), 2),
                f"{fmt(_ratio(jw.get('calls_per_job', math.nan), fixed_calls), 2)}x",
                f"p95 lag {fmt(jw.get('lag_p95', math.nan))} s",
            )
        )
    bound = result.oracles.get(s3.ORACLE_FIXED)
    lines = [
        "How close to the best possible: the **oracle** is the fewest calls per job of",
        "any schedule that sees 95 % of the jobs (pooled over the types, as the p95 is)",
        "within the lag bound, knowing each type's true duration distribution (50,000",
        "durations drawn per type exactly as the suite draws them) but not the",
        "individual job's duration. Like the daemon it polls once at `initial_delay`",
        "(that poll tells the job's type) and keeps every gap within `min_interval` and",
        "`max_interval`. Exact dynamic programming over poll times on a "
        f"{fmt(s3.ORACLE_STEP, 1)} s grid: a poll",
        "costs the share of jobs still running at the previous one, and a job is seen",
        "within the bound if it ended no more than the bound before the poll that sees",
        "it; one price per covered job (a Lagrange multiplier, shared by the types so",
        "they share the misses) is bisected until 95 % are covered, and weak duality",
        "turns the result into a lower bound. It holds for any schedule that learns",
        "from a poll only whether the job is still running; the simulator's INIT",
        "phase and sub-job ends, placed at fixed fractions of a job's duration, carry",
        "more, which jobwatchd does not use. Per type, the calls of the optimal",
        "schedule and the share of jobs it sees within the bound:",
        "",
        *_table(("schedule", "calls per job", "vs fixed loop", "per type"), rows),
        "",
    ]
    if bound is not None:
        reachable = bound.calls_per_job <= 0.5 * fixed_calls
        lines += [
            "The oracle needs "
            f"{fmt(bound.calls_per_job, 2)} calls per job for the fixed loop's p95 lag: "
            + (
                "half the fixed loop's calls is within reach of an open-loop schedule."
                if reachable
                else "half the fixed loop's calls is **not reachable** by any schedule "
                "that only knows the job types' durations (without its first poll, "
                f"{fmt(bound.calls_per_job - 1, 2)}). It gives up the jobs that end "
                "unusually early (every job is still running then, so polls are dearest) "
                "and covers the slow tail."
            ),
            "",
        ]
    return lines


def _s3_limits(
    result: s3.Result, warm: dict[str, float], models: dict[str, dict[str, float]]
) -> list[str]:
    summary = result.summary()
    fixed, jw = summary.get(s3.FIXED, {}), summary.get(s3.JW, {})
    if not fixed or not jw:
        return []
    window = warm.get("window (every target_lag)", math.nan)
    before = sum(
        warm.get(phase, 0.0)
        for phase in ("first poll", "before the window (sleeping until it opens)")
    )
    sigmas = [DurationModel.from_json(v).sigma for v in models.values()]
    drawn = [kind.sigma for kind in s3.JOB_MIX]
    target_lag = s3.DEFAULT_POLLING["target_lag"]
    lines = [
        "What limits it: of jobwatchd's "
        f"{fmt(jw['calls_per_job'])} calls per job (the fixed loop: "
        f"{fmt(fixed['calls_per_job'])}), the replay puts",
        f"{fmt(window, 1)} in the window, polled every `target_lag` ({target_lag:g} s, against "
        "the fixed loop's 10 s),",
        f"and {fmt(before, 1)} before it (the first poll, and the wake-ups at most "
        "`max_interval` apart until the window opens).",
    ]
    if sigmas:
        lines += [
            f"The learned body sigma ({fmt(min(sigmas), 2)}-{fmt(max(sigmas), 2)}) matches the "
            f"drawn jobs' ({fmt(min(drawn), 2)}-{fmt(max(drawn), 2)}).",
        ]
    lines += [
        f"The default `target_lag` ({target_lag:g} s) is below the fixed loop's p95 lag, so",
        "jobwatchd buys a lower lag with part of its calls; the oracle at `target_lag`",
        "above is the fair comparison for that. Unlike the oracle, the learned window",
        "gives up the same early share of every type, where the oracle gives up more",
        "of the long types, whose early polls cost most per job covered.",
    ]
    if jw.get("lag_p99", 0.0) > fixed.get("lag_p99", math.inf):
        lines += [
            "Past the window a straggler falls back to backoff, by then at up to",
            f"`max_interval`: hence a p99 of {fmt(jw['lag_p99'])} s against the fixed "
            f"loop's {fmt(fixed['lag_p99'])} s.",
        ]
    return [*lines, ""]


def _s4(result: s4.Result) -> list[str]:
    p = result.params
    summary = result.summary()
    per_job = 2 + 3 * p.sub_jobs
    rows = [
        (
            label,
            fmt(summary[f"{key}_p50"] * 1000, 0),
            fmt(summary[f"{key}_p99"] * 1000, 0),
            fmt(summary[f"{key}_max"] * 1000, 0),
        )
        for label, key in (
            ("**end to end**: transition -> webhook acknowledged", "e2e"),
            ("detection: transition -> `observed_at`", "detection"),
            ("delivery: `observed_at` -> webhook acknowledged", "delivery"),
        )
    ]
    lines = [
        "## 4. End to end",
        "",
        f"`createServer` jobs with {p.sub_jobs} sub-jobs, {p.duration:g} s long, created at a",
        f"steady rate so that their real transitions ({per_job} per job: the job's RUNNING and",
        f"end, each sub-job's INIT, RUNNING and end) come at {p.rate:,.0f}/s once the first",
        f"jobs are {p.duration:g} s old; arrivals last {p.arrival_seconds:g} s. The daemon polls "
        f"each job every {p.poll_interval:g} s",
        "and has one sink: a signed `webhook` (default `concurrency` 8, `batch_max` 1) to",
        "`bench/receiver.py`, an aiohttp server in its own process that answers 204 on",
        "receipt. Counted: the real transitions between the end of the ramp-up and the",
        f"end of the arrivals: {result.transitions:,} at {fmt(result.steady_rate, 0)}/s. "
        f"The receiver acknowledged {result.events:,} events in all, at most "
        f"{fmt(result.delivered_rate, 0)} in one second.",
        "",
        *_table(("latency", "p50 ms", "p99 ms", "max ms"), rows),
        "",
        f"{result.coalesced:,} transitions had no event of their own because a later one",
        "overtook them between two polls (a sub-job seen INIT -> RUNNING at once);",
        f"{result.missing} were never delivered.",
        "",
        *_s4_limits(result),
        "![e2e](bench/e2e.png)",
        "",
    ]
    lines += [f"- {note}" for note in result.notes]
    return lines


def _s4_limits(result: s4.Result) -> list[str]:
    p = result.params
    summary = result.summary()
    cores = result.cpu_cores
    lines: list[str] = []
    if cores:
        used = ", ".join(f"{name} {fmt(value, 2)}" for name, value in cores.items())
        lines += [f"CPU cores used in the steady window: {used}.", ""]
    late = summary["detection_p99"] > p.poll_interval * 1.1
    if late or summary["delivery_p50"] > 0.1:
        daemon = cores.get("jobwatchd", math.nan)
        lines += [
            "What limits it: with a poll every "
            f"{p.poll_interval:g} s, detection alone would stay under {p.poll_interval:g} s;",
            f"here its p99 is {fmt(summary['detection_p99'] * 1000, 0)} ms and delivery's p50 "
            f"{fmt(summary['delivery_p50'] * 1000, 0)} ms. The daemon",
            f"used {fmt(daemon, 2)} cores for polling, recording "
            f"{p.rate:,.0f} events/s and POSTing each of them",
            "(one request per event with `batch_max` 1, at most 8 in flight): when that",
            "is about one core its single event loop is the bottleneck and polls and",
            "deliveries queue behind each other. `batch_max` > 1 sends fewer, larger",
            "requests.",
            "",
        ]
    else:
        lines += [
            f"Detection stays within about the poll interval ({p.poll_interval:g} s);",
            f"delivery adds {fmt(summary['delivery_p50'] * 1000, 0)} ms at the median.",
            "",
        ]
    return lines


def _s5(result: s5.Result, cores: int) -> list[str]:
    p = result.params
    summary = result.summary()
    rows = []
    for size, v in summary.items():
        rows.append(
            (
                f"**{size}**",
                f"**{fmt(v['polls_per_second'], 0)}** ({fmt(v['sim_polls_per_second'], 0)})",
                fmt(v["cpu_per_1000"], 3),
                fmt(v["db_cpu_per_1000"], 3),
                fmt(v["sim_cpu_per_1000"], 3),
                f"{fmt(v['daemon_cores'], 2)} / {fmt(v['db_cores'], 2)} / {fmt(v['sim_cores'], 2)}",
                f"{v['held_min']:,.0f} / {v['held_max']:,.0f}",
                fmt(v["claim_seconds"], 1),
            )
        )
    lines = [
        "## 5. Fleet throughput (PostgreSQL)",
        "",
        f"{p.jobs:,} running jobs (`createServer`, 2 sub-jobs each, running for a day) in",
        "one simulator (speed 1), as in scenario 1. The fleet's store is a throwaway",
        f"PostgreSQL {result.postgres or '?'} on this machine (`tests/helpers/pg.py`:",
        "`initdb` into a temporary directory, fsync and synchronous commit off). For each of "
        f"{p.repeats} repeat(s),",
        "1 and then 3 instances (the order alternating) start on a fresh database with",
        f'`lease = "{p.lease:g}s"`, intervals of 1 ms, no rate limit and no auth, at',
        f"concurrency {p.concurrency} each; every job is registered through the first instance,",
        "and the suite waits until the instances' `/readyz` `active_jobs` add up to the",
        "job count (the claim time below), every job was observed once, and the sink",
        "delivered the events of those first observations (`jobwatchd_sink_backlog_events`",
        "is 0 on every instance: an earlier version of this scenario started measuring while",
        "one instance was still delivering that backlog from PostgreSQL, which made one",
        f"instance look twice as costly per poll as three). After {p.warmup:g} s",
        f"more, a window of {p.window:g} s is measured: polls are the sum of the instances'",
        "`/readyz` `polls` deltas (the simulator's count of answered queries in",
        "parentheses), CPU from /proc: the daemons (summed), every process of the",
        "PostgreSQL cluster, the simulator. Medians over the repeats; the spread is the",
        "fewest / most jobs one instance held at the end of a window, over all repeats.",
        "",
        *_table(
            (
                "instances",
                "polls/s, all instances",
                "daemon CPU s / 1,000 polls",
                "PostgreSQL CPU s / 1,000 polls",
                "simulator CPU s / 1,000 polls",
                "cores used: daemons / PostgreSQL / simulator",
                "jobs held per instance (min / max)",
                "claim time s",
            ),
            rows,
        ),
        "",
    ]
    one, three = summary.get(1), summary.get(3)
    if one and three:
        rate = _ratio(three["polls_per_second"], one["polls_per_second"])
        cpu = _ratio(three["cpu_per_1000"], one["cpu_per_1000"])
        even = three["held_min"] >= 0.5 * p.jobs / 3
        lines += [
            f"Three instances reach **{fmt(rate, 2)}x** the polls/s of one and spend "
            f"**{fmt(cpu, 2)}x** its daemon CPU per poll",
            f"(PostgreSQL: {fmt(three['db_cpu_per_1000'], 3)} vs "
            f"{fmt(one['db_cpu_per_1000'], 3)} CPU s per 1,000 polls). Every job was",
            "held by exactly one instance in every window (the held counts add up to the job",
            "count, or the scenario fails); "
            + (
                "the split was even within the fair share's slack (an even split plus 10%)."
                if even
                else "the split was uneven: one instance claimed well over its third."
            ),
            "",
        ]
        if rate > 1.3:
            lines += [
                f"This gain is **not scale-out**: the daemons used about the same CPU in all "
                f"({fmt(one['daemon_cores'], 2)} vs {fmt(three['daemon_cores'], 2)} cores).",
                "It says that one instance holding every job of a fleet store costs more per poll",
                "than three holding a third each: a cost that grows with the jobs an instance",
                "holds (its daemon and PostgreSQL CPU per poll both rise), which the quick run",
                "(few jobs) does not show and which is not explained yet. A single daemon on",
                "SQLite polls the same jobs faster (scenario 1, no auth).",
                "",
            ]
    lines += [
        f"What this shows, and what it does not: this machine has {cores} core(s), and the",
        "instances, PostgreSQL and the simulator all run on them. With 1 ms intervals a",
        "daemon polls as fast as its CPU allows, so three instances only divide the same",
        "cores three ways and add the cost of being a fleet (claims, heartbeats, lease",
        "renewals, three event loops and connection pools). The figures are therefore the",
        "overhead and the correctness of sharing one database, not scale-out. Showing",
        "scale-out needs each instance on its own machine (or pinned to its own cores),",
        "PostgreSQL and the simulator on others, and a simulator that is not the",
        "bottleneck (scenario 1's raw loop shows its ceiling on this machine). In",
        "production, intervals are seconds, not milliseconds: the limit is then the",
        "account's `rate_limit`, which the fleet shares (each instance takes",
        "`rate_limit / live instances`), not the daemons' CPU.",
        "",
        "![fleet](bench/fleet.png)",
        "",
    ]
    lines += [f"- {note}" for note in result.notes]
    return lines


def _with_provenance(lines: list[str], info: dict[str, str]) -> list[str]:
    return [lines[0], "", provenance(info), *lines[1:]] if lines else lines


def _kept_note(run: Run) -> list[str]:
    if not run.kept:
        return []
    names = ", ".join(sorted(key[1:] for key in run.kept))
    lines = [
        f"Scenario(s) {names} were not run this time: their sections, targets and raw",
        "results are kept from the run that last measured them, as the line under each",
        "section's heading says.",
    ]
    runs: dict[str, list[str]] = {}
    for key, kept in sorted(run.kept.items()):
        runs.setdefault(kept.info.get("started", "?"), []).append(key[1:])
    for started, keys in runs.items():
        m = next(k.machine for k in run.kept.values() if k.info.get("started") == started) or {}
        load = m.get("load_before", [math.nan]), m.get("load_after", [math.nan])
        same = m.get("cpu_model") == run.machine.cpu_model and m.get("cores") == run.machine.cores
        where = (
            "." if same else f", on another machine: {m.get('cpu_model')}, {m.get('cores')} cores."
        )
        lines.append(
            f"The run of {started} (scenario(s) {', '.join(keys)}) had a load average (1 min) "
            f"of {fmt(float(load[0][0]), 2)} / {fmt(float(load[1][0]), 2)} before / after{where}"
        )
    return ["", *lines]


def write(run: Run, out: Path) -> Path:
    """Write ``out/BENCHMARKS.md`` and ``out/bench/*.png``; return the report's path.

    Scenarios in ``run.kept`` keep their sections (and charts) from the previous report."""
    charts = out / "bench"
    charts.mkdir(parents=True, exist_ok=True)
    produced = (
        "Produced by the suite in `bench/`; the latest run was:"
        if run.kept
        else "Produced in one run by the suite in `bench/`, with:"
    )
    lines = [
        "# Benchmarks",
        "",
        produced,
        "",
        "```sh",
        run.command,
        "```",
        "",
        "(`make bench` runs `python -m bench`; `--quick` is the one-minute smoke test",
        "that CI runs through `tests/e2e/test_bench_quick.py`; `--only s5` runs one scenario",
        "and keeps the others' results.)",
        "",
        f"Mode: **{run.mode}**; started {run.started}; took {run.seconds / 60:.1f} min. The",
        "suite starts the simulator, the daemons, the reference clients and the webhook",
        "receiver as separate processes on 127.0.0.1, measures every contender of a",
        "scenario side by side in the same run, and reports medians over repeats. The raw",
        "numbers are in `docs/bench/results.json`.",
        *_kept_note(run),
        "",
        *_machine(run),
        "",
        "## Targets",
        "",
        *_table(
            ("scenario", "target", "measured", "verdict"),
            [(t.scenario, t.target, t.measured, t.verdict) for t in targets(run)],
        ),
        "",
    ]
    for key, error in run.errors.items():
        lines += [f"**Scenario {key} failed**: `{error}`", ""]
    for key, kept in sorted(run.kept.items()):
        if kept.error:
            lines += [
                f"**Scenario {key} failed** (run of {kept.info.get('started')}): `{kept.error}`",
                "",
            ]
    info = run.info

    def section(key: str, produced: list[str]) -> list[str]:
        if key in run.kept and getattr(run, key) is None:
            kept = run.kept[key]
            body: list[str] = []
            for heading in HEADINGS[key]:
                part = _kept_part(kept.sections, heading)
                body += _with_provenance(part, kept.info) if part else [heading, "", "Not run."]
                body.append("")
            return body
        if not produced:
            return [line for heading in HEADINGS[key] for line in (heading, "", "Not run.", "")]
        return produced

    if run.s1 is not None:
        chart_throughput(run.s1, charts / "throughput.png")
        lines += section(
            "s1",
            [
                *_with_provenance(_s1(run.s1), info),
                "",
                *_with_provenance(_profile(run.s1), info),
                "",
            ],
        )
        if run.s1.profile is not None and not run.s1.profile.error:
            chart_profile(run.s1.profile, charts / "profile.png")
    else:
        lines += section("s1", [])
    if run.s2 is not None and run.s2.checkpoints:
        chart_scale(run.s2, charts / "scale.png")
        lines += section("s2", [*_with_provenance(_s2(run.s2), info), ""])
    else:
        lines += section("s2", [])
    if run.s3 is not None and run.s3.cohorts:
        chart_efficiency(run.s3, charts / "efficiency.png")
        lines += section("s3", [*_with_provenance(_s3(run.s3), info), ""])
    else:
        lines += section("s3", [])
    if run.s4 is not None and run.s4.end_to_end:
        chart_e2e(run.s4, charts / "e2e.png")
        lines += section("s4", [*_with_provenance(_s4(run.s4), info), ""])
    else:
        lines += section("s4", [])
    if run.s5 is not None and run.s5.windows:
        chart_fleet(run.s5, charts / "fleet.png")
        lines += section("s5", [*_with_provenance(_s5(run.s5, run.machine.cores), info), ""])
    else:
        lines += section("s5", [])
    path = out / "BENCHMARKS.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


def _kept_part(sections: list[str], heading: str) -> list[str]:
    """The lines of ``heading``'s section among a kept scenario's sections."""
    part: list[str] = []
    for line in sections:
        if line.startswith("## "):
            if part:
                break
            if line != heading:
                continue
        if line.startswith("## ") or part:
            part.append(line)
    while part and not part[-1].strip():
        part.pop()
    return part
