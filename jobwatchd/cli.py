"""The ``jobwatchd`` console script (PRODUCT §6)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from jobwatchd import __version__
from jobwatchd.client import ApiClient, ClientFailure, problem_text, wait_exit_code
from jobwatchd.config import (
    Config,
    ConfigError,
    load_config,
    read_secret,
    render_effective,
    resolve_config_path,
)
from jobwatchd.validation import ValidationError, parse_label_selector, validate_id

EXIT_USAGE = 2


def _load(args: argparse.Namespace) -> Config:
    explicit = Path(args.config) if getattr(args, "config", None) else None
    return load_config(resolve_config_path(explicit))


def _fail(message: str) -> int:
    print(f"jobwatchd: {message}", file=sys.stderr)
    return EXIT_USAGE


# -- daemon-side commands ------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """``jobwatchd run``."""
    from jobwatchd.daemon import run_daemon  # noqa: PLC0415 - keep client commands light
    from jobwatchd.logs import configure_logging  # noqa: PLC0415

    if args.simulate and not args.config and not os.environ.get("JOBWATCHD_CONFIG"):
        args.config = str(Path(__file__).resolve().parent.parent / "config" / "simulate.toml")
        if not Path(args.config).exists():
            args.config = None
    config = _load(args)
    configure_logging(config.daemon.log_level)
    return run_daemon(config, simulate=args.simulate, simulator_port=args.simulator_port)


def cmd_simulate(args: argparse.Namespace) -> int:
    """``jobwatchd simulate``."""
    from jobwatchd.simulator import Faults, run_standalone  # noqa: PLC0415

    token = read_secret(Path(args.token_file), "--token-file") if args.token_file else None
    faults = Faults(
        latency=args.latency,
        error_5xx=args.fault_5xx,
        throttle=args.fault_429,
        retry_after=args.retry_after,
        malformed=args.fault_malformed,
        no_status=args.fault_no_status,
        not_found=args.fault_404,
        rejected=args.fault_400,
    )
    run_standalone(
        host=args.host,
        port=args.port,
        speed=args.speed,
        token=token,
        faults=faults,
        demo_jobs=args.demo,
        seed=args.seed,
    )
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    """``jobwatchd check-config``: validate and print the effective config."""
    config = _load(args)
    print(f"# effective configuration (source: {config.source or 'built-in defaults'})")
    print(render_effective(config), end="")
    return 0


# -- client commands ---------------------------------------------------------------


def _client(args: argparse.Namespace) -> ApiClient:
    address = args.api
    token_file = Path(args.token_file) if args.token_file else None
    if address is None or token_file is None:
        try:
            config = _load(args)
        except ConfigError:
            if address is None:
                raise
        else:
            address = address or config.api.listen
            token_file = token_file or config.api.token_file
    token = read_secret(token_file, "api.token_file") if token_file else None
    return ApiClient(address or "127.0.0.1:8787", token=token)


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _sub_jobs(job: dict[str, Any]) -> str:
    entities = job.get("entities") or {}
    subs = entities.get("sub_jobs")
    if not isinstance(subs, list) or not subs:
        return ""
    done = sum(
        1 for sub in subs if isinstance(sub, dict) and sub.get("status") in ("SUCCESS", "FAIL")
    )
    total = entities.get("sub_jobs_total") or len(subs)
    return f" sub-jobs {done}/{total}"


def _summary(job: dict[str, Any]) -> str:
    line = f"{job['job_id']} {job['status']}{_sub_jobs(job)}"
    if job.get("error_code") or job.get("fail_reason"):
        line += f" error={job.get('error_code')} reason={job.get('fail_reason')!r}"
    return line


async def _wait(
    client: ApiClient, job_ids: Sequence[str], timeout: float | None, as_json: bool
) -> int:
    deadline = None if timeout is None else time.monotonic() + timeout
    started = time.monotonic()

    async def one(job_id: str) -> dict[str, Any]:
        job = await client.wait_terminal(job_id, deadline)
        if not as_json:
            elapsed = time.monotonic() - started
            state = "" if job.get("terminal") else " (still waiting: timed out)"
            print(f"{_summary(job)} after {elapsed:.1f}s{state}", flush=True)
        return job

    jobs = list(await asyncio.gather(*(one(job_id) for job_id in job_ids)))
    if as_json:
        _print_json(jobs)
    return wait_exit_code(jobs)


def _run_client(args: argparse.Namespace, action: Callable[[ApiClient], Any]) -> int:
    async def main() -> int:
        async with _client(args) as client:
            result: int = await action(client)
            return result

    try:
        return asyncio.run(main())
    except ClientFailure as exc:
        return _fail(str(exc))


def cmd_register(args: argparse.Namespace) -> int:
    """``jobwatchd register JOB_ID...``."""
    labels = dict(parse_label_selector(value, "--label") for value in args.label)
    jobs: list[dict[str, Any]] = []
    for job_id in args.job_ids:
        item: dict[str, Any] = {"job_id": validate_id(job_id, "JOB_ID")}
        if args.project_id:
            item["project_id"] = args.project_id
        if args.account:
            item["account"] = args.account
        if labels:
            item["labels"] = labels
        if args.job_timeout is not None:
            item["timeout"] = args.job_timeout
        jobs.append(item)

    async def action(client: ApiClient) -> int:
        status, body = await client.register(jobs)
        if status not in (200, 201):
            return _fail(problem_text(status, body))
        if not args.wait:
            if args.json:
                _print_json(body["jobs"])
            else:
                for job in body["jobs"]:
                    print(f"{job['job_id']} tracked ({job['status']})")
            return 0
        return await _wait(client, args.job_ids, args.timeout, args.json)

    return _run_client(args, action)


def cmd_status(args: argparse.Namespace) -> int:
    """``jobwatchd status JOB_ID``."""
    job_id = validate_id(args.job_id, "JOB_ID")

    async def action(client: ApiClient) -> int:
        job = await client.get_job(job_id)
        if args.json:
            _print_json(job)
            return 0
        print(_summary(job))
        for key in (
            "project_id",
            "account",
            "job_type",
            "registered_at",
            "updated_at",
            "polls",
            "next_poll_at",
        ):
            print(f"  {key}: {job.get(key)}")
        if job.get("last_error"):
            print(f"  last_error: {job['last_error']}")
        for step in job.get("history", []):
            print(f"  {step['at']}  {step['from']} -> {step['to']}")
        return 0

    return _run_client(args, action)


def cmd_list(args: argparse.Namespace) -> int:
    """``jobwatchd list``: follows the cursor until ``--limit`` jobs or the end."""

    async def action(client: ApiClient) -> int:
        jobs: list[dict[str, Any]] = []
        after: str | None = None
        while args.limit is None or len(jobs) < args.limit:
            params = [("limit", "1000")]
            if args.status:
                params.append(("status", args.status))
            params.extend(("label", value) for value in args.label)
            if after:
                params.append(("after", after))
            status, body = await client.request("GET", "/v1/jobs", params=params)
            if status != 200:
                return _fail(problem_text(status, body))
            jobs.extend(body["jobs"])
            after = body["next"]
            if after is None:
                break
        if args.limit is not None:
            jobs = jobs[: args.limit]
        if args.json:
            _print_json(jobs)
        else:
            for job in jobs:
                print(_summary(job))
        return 0

    return _run_client(args, action)


def cmd_wait(args: argparse.Namespace) -> int:
    """``jobwatchd wait JOB_ID...``: exit 0/1/124 (2 on errors)."""
    for job_id in args.job_ids:
        validate_id(job_id, "JOB_ID")
    return _run_client(args, lambda client: _wait(client, args.job_ids, args.timeout, args.json))


def cmd_cancel(args: argparse.Namespace) -> int:
    """``jobwatchd cancel JOB_ID``: stop tracking."""
    job_id = validate_id(args.job_id, "JOB_ID")

    async def action(client: ApiClient) -> int:
        status, body = await client.request("DELETE", f"/v1/jobs/{job_id}")
        if status == 204:
            print(f"{job_id} no longer tracked")
            return 0
        print(f"jobwatchd: {problem_text(status, body)}", file=sys.stderr)
        return 1

    return _run_client(args, action)


# -- parser ------------------------------------------------------------------------


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="jobwatchd", description="Track ECS asynchronous jobs and emit their transitions."
    )
    parser.add_argument("--version", action="version", version=f"jobwatchd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str,
        handler: Callable[[argparse.Namespace], int],
        text: str,
        *,
        config: bool = True,
        client: bool = False,
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(handler=handler)
        if config:
            sub.add_argument(
                "-c",
                "--config",
                help="config file (default: $JOBWATCHD_CONFIG,"
                " else /etc/jobwatchd/jobwatchd.toml, else built-in defaults)",
            )
        if client:
            sub.add_argument(
                "--api",
                help="daemon address: host:port or unix:/path (default: the config's api.listen)",
            )
            sub.add_argument("--token-file", help="file holding the API bearer token")
        return sub

    run = command("run", cmd_run, "Run the daemon in the foreground.")
    run.add_argument(
        "--simulate",
        action="store_true",
        help="start the built-in simulated cloud and point the default account at it",
    )
    run.add_argument(
        "--simulator-port",
        type=int,
        default=8788,
        help="port of the in-process simulator (default 8788)",
    )

    sim = command("simulate", cmd_simulate, "Serve the simulated ECS job API alone.", config=False)
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8788)
    sim.add_argument("--speed", type=float, default=1.0, help="time compression factor")
    sim.add_argument("--token-file", help="require this X-Auth-Token")
    sim.add_argument("--demo", type=int, default=5, help="demo jobs created at start")
    sim.add_argument("--seed", type=int, default=None)
    sim.add_argument("--latency", type=_seconds, default=0.0, help="seconds added to each query")
    sim.add_argument("--fault-5xx", type=_probability, default=0.0)
    sim.add_argument("--fault-429", type=_probability, default=0.0)
    sim.add_argument("--retry-after", type=_seconds, default=1.0)
    sim.add_argument("--fault-malformed", type=_probability, default=0.0)
    sim.add_argument("--fault-no-status", type=_probability, default=0.0)
    sim.add_argument("--fault-404", type=_probability, default=0.0)
    sim.add_argument("--fault-400", type=_probability, default=0.0, help="permanent rejections")

    command("check-config", cmd_check_config, "Validate and print the effective config.")

    register = command("register", cmd_register, "Start tracking jobs.", client=True)
    register.add_argument("job_ids", nargs="+", metavar="JOB_ID")
    register.add_argument("--project-id")
    register.add_argument("--account")
    register.add_argument("--label", action="append", default=[], metavar="K=V")
    register.add_argument("--job-timeout", type=_seconds, help="per-job timeout in seconds")
    register.add_argument("--wait", action="store_true", help="then wait like 'jobwatchd wait'")
    register.add_argument("--timeout", type=_seconds, help="with --wait: give up after S seconds")
    register.add_argument("--json", action="store_true")

    status = command("status", cmd_status, "Show one job.", client=True)
    status.add_argument("job_id", metavar="JOB_ID")
    status.add_argument("--json", action="store_true")

    listing = command("list", cmd_list, "List tracked jobs.", client=True)
    listing.add_argument("--status")
    listing.add_argument("--label", action="append", default=[], metavar="K=V")
    listing.add_argument("--limit", type=int)
    listing.add_argument("--json", action="store_true")

    wait = command(
        "wait",
        cmd_wait,
        "Wait until jobs end: exit 0 all SUCCESS, 1 any"
        " ended otherwise, 124 timed out, 2 on errors.",
        client=True,
    )
    wait.add_argument("job_ids", nargs="+", metavar="JOB_ID")
    wait.add_argument("--timeout", type=_seconds, help="give up after S seconds (exit 124)")
    wait.add_argument("--json", action="store_true")

    cancel = command("cancel", cmd_cancel, "Stop tracking a job.", client=True)
    cancel.add_argument("job_id", metavar="JOB_ID")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        return _fail(f"config error: {exc}")
    except ValidationError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
