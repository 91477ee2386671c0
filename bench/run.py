"""The benchmark suite's entry point: every scenario in one run, then the report.

    python -m bench            # the full suite, about 10 minutes on 2 cores
    python -m bench --quick    # the smoke-test sizes, about a minute
    make bench                 # the full suite through the Makefile

Writes ``docs/BENCHMARKS.md``, ``docs/bench/*.png``, ``docs/bench/results.json``
and the profile's collapsed stacks (``--out`` chooses another directory).
Scenarios: see :mod:`bench.s1_throughput`, :mod:`bench.s2_scale`,
:mod:`bench.s3_efficiency`, :mod:`bench.s4_e2e` and :mod:`bench.s5_fleet`. A scenario that fails is
reported as failed; the others still run. With ``--only``, the scenarios not
run keep their sections and results from the previous report in ``--out``
(each section names the run it comes from). Every process the suite started is
stopped when it ends, including on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from bench import report
from bench import s1_throughput as s1
from bench import s2_scale as s2
from bench import s3_efficiency as s3
from bench import s4_e2e as s4
from bench import s5_fleet as s5
from bench.common import ROOT, Http, describe_machine
from jobwatchd.daemon import install_event_loop

SCENARIOS = ("s1", "s2", "s3", "s4", "s5")


@dataclasses.dataclass(frozen=True)
class Plan:
    """The parameters of every scenario for one mode."""

    s1: s1.Params
    s2: s2.Params
    s3: s3.Params
    s4: s4.Params
    s5: s5.Params


FULL = Plan(
    s1=s1.Params(jobs=10_000, warmup=1.5, window=5.0, repeats=3, profile_seconds=10.0),
    s2=s2.Params(sizes=(100_000, 1_000_000), restarts=3, restore_timeout=60.0),
    s3=s3.Params(speed=20.0, jobs_per_repeat=120, arrival_seconds=15.0, repeats=3),
    s4=s4.Params(rate=1000.0, sub_jobs=20, duration=10.0, arrival_seconds=25.0),
    s5=s5.Params(jobs=10_000, warmup=2.0, window=5.0, repeats=3),
)
QUICK = Plan(
    s1=s1.Params(jobs=1_000, warmup=1.0, window=1.5, repeats=1, profile_seconds=2.0),
    s2=s2.Params(
        sizes=(10_000, 30_000),
        restarts=2,
        restore_timeout=30.0,
        profile_jobs=10_000,
        profile_seconds=1.0,
    ),
    s3=s3.Params(
        speed=40.0,
        warm_per_type=8,
        warm_needed=5,
        jobs_per_repeat=60,
        arrival_seconds=6.0,
        repeats=1,
        max_duration=400.0,
    ),
    s4=s4.Params(rate=1000.0, sub_jobs=20, duration=3.0, arrival_seconds=7.0),
    s5=s5.Params(jobs=500, warmup=0.5, window=1.5, repeats=1, claim_timeout=60.0),
)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Unwinds through every `with Procs(...)`, which stops the children.
    raise SystemExit(128 + signum)


async def _scenarios(args: argparse.Namespace, plan: Plan, run: report.Run, work: Path) -> None:
    http = Http.create()
    profile_dir = args.out / "bench"
    try:
        steps: list[tuple[str, str, Callable[[], Any]]] = [
            (
                "s1",
                "1. poll throughput ceiling",
                lambda: s1.run(work / "s1", http, plan.s1, _log, profile_dir),
            ),
            ("s2", "2. scale", lambda: s2.run(work / "s2", http, plan.s2, _log, profile_dir)),
            ("s3", "3. poll efficiency", lambda: s3.run(work / "s3", http, plan.s3, _log)),
            ("s4", "4. end to end", lambda: s4.run(work / "s4", http, plan.s4, _log)),
            ("s5", "5. fleet throughput", lambda: s5.run(work / "s5", http, plan.s5, _log)),
        ]
        for key, title, start in steps:
            if key not in args.only:
                continue
            (work / key).mkdir(parents=True, exist_ok=True)
            _log(f"bench: {title}")
            began = time.monotonic()
            try:
                setattr(run, key, await start())
            except Exception as exc:
                traceback.print_exc()
                run.errors[key] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            _log(f"bench: {title} took {time.monotonic() - began:.0f} s")
    finally:
        await http.close()


def _results_json(run: report.Run) -> bytes:
    data: dict[str, Any] = {
        "command": run.command,
        "mode": run.mode,
        "started": run.started,
        "seconds": run.seconds,
        "machine": dataclasses.asdict(run.machine),
        "errors": dict(run.errors),
        "targets": [dataclasses.asdict(t) for t in report.targets(run)],
    }
    for key, kept in run.kept.items():
        if kept.error:
            data["errors"][key] = kept.error
    for key in SCENARIOS:
        result = getattr(run, key)
        if result is not None:
            data[key] = {**result.to_json(), "run": run.info}
        elif key in run.kept and run.kept[key].data is not None:
            data[key] = {**(run.kept[key].data or {}), "run": run.kept[key].info}
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)


def main(argv: list[str] | None = None) -> int:
    """Run the suite; 0 when every scenario ran (targets are reported, not asserted)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes, about a minute")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs", help="where BENCHMARKS.md and bench/ go"
    )
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help="comma-separated scenarios to run (s1,s2,s3,s4,s5); the others keep their "
        "results from the previous report in --out",
    )
    parser.add_argument("--keep-work", action="store_true", help="keep the processes' logs")
    args = parser.parse_args(argv)
    args.only = {part.strip() for part in args.only.split(",") if part.strip()}
    unknown = args.only - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    args.out = args.out.resolve()
    (args.out / "bench").mkdir(parents=True, exist_ok=True)
    plan = QUICK if args.quick else FULL
    shown = ["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])]
    run = report.Run(
        command=shlex.join(shown),
        mode="quick" if args.quick else "full",
        started=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        seconds=0.0,
        machine=describe_machine(),
    )
    previous = signal.signal(signal.SIGTERM, _terminate)
    work = Path(tempfile.mkdtemp(prefix="jobwatchd-bench-"))
    began = time.monotonic()
    try:
        install_event_loop()
        asyncio.run(_scenarios(args, plan, run, work))
    finally:
        signal.signal(signal.SIGTERM, previous)
        if args.keep_work:
            _log(f"bench: work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    run.seconds = time.monotonic() - began
    run.machine.load_after = os.getloadavg()
    run.kept = report.load_kept(args.out, [key for key in SCENARIOS if key not in args.only])
    path = report.write(run, args.out)
    (args.out / "bench" / "results.json").write_bytes(_results_json(run))
    _log(f"bench: wrote {path} in {run.seconds:.0f} s")
    for target in report.targets(run):
        _log(f"  [{target.verdict.strip('*'):12s}] {target.target}: {target.measured}")
    return 1 if run.errors else 0
