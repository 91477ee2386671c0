# PYTHON_ARGCOMPLETE_OK
"""The ``jobwatchd`` console script: every subcommand (see docs/cli.md)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from jobwatchd import __version__
from jobwatchd.client import (
    ApiError,
    AsyncClient,
    ClientError,
    JobProgress,
    JobSpec,
    JobWaiter,
    SseMessage,
    WaitResult,
)
from jobwatchd.config import (
    Config,
    ConfigError,
    CredentialSources,
    load_config,
    read_secret,
    render_effective,
    resolve_config_path,
)
from jobwatchd.models import DEFAULT_SERVICE, EVENT_TYPES
from jobwatchd.safetext import printable, terminal_json
from jobwatchd.services import SERVICES
from jobwatchd.validation import ValidationError, parse_label_selector, validate_id

EXIT_USAGE = 2
EVENTS_RECONNECT_GRACE = 30.0
"""Without --follow, ``events`` gives up on a daemon gone for this long (with it: never)."""


def _load(args: argparse.Namespace) -> Config:
    explicit = Path(args.config) if getattr(args, "config", None) else None
    return load_config(resolve_config_path(explicit))


def _fail(message: str) -> int:
    from jobwatchd.logs import is_journal_stream  # noqa: PLC0415 - keep client commands light

    # Under systemd stderr is the journal: "<3>" files the line at priority err,
    # so `journalctl -p err -u jobwatchd` shows why the service did not start.
    prefix = "<3>" if is_journal_stream(sys.stderr) else ""
    print(f"{prefix}jobwatchd: {printable(message)}", file=sys.stderr)
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
    from jobwatchd.cloud.simulator import Faults, run_standalone  # noqa: PLC0415

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


def cmd_migrate(args: argparse.Namespace) -> int:
    """``jobwatchd migrate``: apply pending schema migrations to the configured
    store and print its schema version (the daemon also migrates on start)."""
    import sqlite3  # noqa: PLC0415 - keep client commands light

    import asyncpg  # noqa: PLC0415

    from jobwatchd.daemon import open_store, state_path  # noqa: PLC0415
    from jobwatchd.logs import configure_logging  # noqa: PLC0415
    from jobwatchd.options import redact_dsn  # noqa: PLC0415

    configure_logging("warning")  # stdout is for the result; warnings still show
    config = _load(args)
    store = open_store(config)
    where = (
        str(state_path(config))
        if config.daemon.store == "sqlite"
        else redact_dsn(config.daemon.store)
    )

    async def migrate() -> int:
        await store.open()
        try:
            return await store.schema_version()
        finally:
            await store.close()

    try:
        version = asyncio.run(migrate())
    except (
        OSError,
        RuntimeError,
        sqlite3.Error,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    ) as exc:
        print(f"jobwatchd: cannot migrate {where}: {exc}", file=sys.stderr)
        return 1
    print(f"{where}: schema version {version}")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    """``jobwatchd check-config``: validate and print the effective config.

    Secrets under ``/run/credentials/UNIT/`` exist only inside the running
    service: they are read from ``--credentials-dir`` (the ``LoadCredential=``
    sources, by credential name) or, without it, listed as not checked.
    """
    explicit = Path(args.config) if getattr(args, "config", None) else None
    directory = Path(args.credentials_dir) if args.credentials_dir else None
    config = load_config(
        resolve_config_path(explicit), credentials=CredentialSources(directory=directory)
    )
    print(f"# effective configuration (source: {config.source or 'built-in defaults'})")
    print(render_effective(config), end="")
    for secret in config.unchecked_secrets:
        print(
            f"jobwatchd: not checked: {secret} is handed over by LoadCredential= when the "
            "service starts (pass --credentials-dir DIR to check the sources in DIR)",
            file=sys.stderr,
        )
    return 0


# -- client commands ---------------------------------------------------------------


def _client(args: argparse.Namespace) -> AsyncClient:
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
    return AsyncClient(address or "127.0.0.1:8787", token=token)


def _print_json(value: Any) -> None:
    sys.stdout.write(terminal_json(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()) + "\n")


def _event_json(data: str) -> str:
    """An event of the stream as one line of JSON that cannot drive a terminal
    (re-encoded: the daemon is not trusted to have escaped it)."""
    try:
        return terminal_json(orjson.dumps(orjson.loads(data)).decode())
    except orjson.JSONDecodeError:
        return printable(data)


def _sub_jobs(job: dict[str, Any]) -> str:
    entities = job.get("entities") or {}
    subs = entities.get("sub_jobs")
    if not isinstance(subs, list) or not subs:
        return ""
    done = sum(
        1 for sub in subs if isinstance(sub, dict) and sub.get("status") in ("SUCCESS", "FAIL")
    )
    total = entities.get("sub_jobs_total") or len(subs)
    return f" sub-jobs {done}/{printable(total)}"


def _percent(job: dict[str, Any]) -> str:
    progress = job.get("progress")
    percent = progress.get("percent") if isinstance(progress, dict) else None
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        return ""
    return f" {percent:g}%"


def _service(job: dict[str, Any]) -> str:
    service = job.get("service")
    return f" [{printable(service)}]" if service and service != DEFAULT_SERVICE else ""


def _summary(job: dict[str, Any]) -> str:
    line = (
        f"{printable(job['job_id'])}{_service(job)} {printable(job['status'])}"
        f"{_sub_jobs(job)}{_percent(job)}"
    )
    if job.get("error_code") or job.get("fail_reason"):
        line += (
            f" error={printable(job.get('error_code'))}"
            f" reason={printable(repr(job.get('fail_reason')))}"
        )
    return line


def _note(message: str) -> None:
    print(f"jobwatchd: {printable(message)}", file=sys.stderr, flush=True)


async def _wait(
    client: AsyncClient, job_ids: Sequence[str], timeout: float | None, as_json: bool
) -> int:
    """Wait for the jobs: a live line per job on a terminal, a plain line per job
    as it ends otherwise, the wait's summary with ``--json`` (each job's object
    in it). The exit code is the result's (see docs/cli.md)."""
    quiet = as_json
    live = not quiet and sys.stdout.isatty()

    def plain(progress: JobProgress) -> None:
        job = dict(progress.doc)
        if progress.cancelled:
            state = " (no longer tracked: cancelled)"
        elif not progress.terminal:
            state = " (still waiting: timed out)"
        else:
            state = ""
        print(f"{_summary(job)} after {progress.elapsed():.1f}s{state}", flush=True)

    waiter = JobWaiter(
        client,
        list(dict.fromkeys(job_ids)),
        timeout=timeout,
        on_final=None if quiet or live else plain,
        on_retry=_note,
        follow_events=live,  # the live view shows sub-jobs as they change
    )
    result = await (_wait_live(waiter) if live else waiter.run())
    if as_json:
        _print_json(result.summary())
    return result.exit_code


async def _wait_live(waiter: JobWaiter) -> WaitResult:
    from rich.console import Console  # noqa: PLC0415 - only on a terminal

    from jobwatchd.terminal import WaitProgress, print_wait_results  # noqa: PLC0415

    console = Console()
    with WaitProgress(waiter.progress, console) as view:

        async def redraw() -> None:
            while True:
                view.refresh()
                await asyncio.sleep(0.25)

        redrawing = asyncio.create_task(redraw())
        try:
            result = await waiter.run()
        finally:
            redrawing.cancel()
    print_wait_results(console, waiter.progress.values())
    return result


def _run_client(args: argparse.Namespace, action: Callable[[AsyncClient], Any]) -> int:
    async def main() -> int:
        async with _client(args) as client:
            result: int = await action(client)
            return result

    try:
        return asyncio.run(main())
    except ClientError as exc:
        return _fail(str(exc))
    except (KeyError, TypeError, AttributeError) as exc:
        # An answer of another shape than the API's (a proxy, another service,
        # a hostile daemon): say so in one line rather than with a traceback.
        return _fail(
            f"jobwatchd sent an answer of an unexpected shape ({type(exc).__name__}: {exc})"
        )


def cmd_register(args: argparse.Namespace) -> int:
    """``jobwatchd register JOB_ID...``."""
    labels = dict(parse_label_selector(value, "--label") for value in args.label)
    specs = [
        JobSpec(
            job_id=validate_id(job_id, "JOB_ID"),
            service=args.service or None,
            project_id=args.project_id or None,
            account=args.account or None,
            labels=labels or None,
            timeout=args.job_timeout,
        )
        for job_id in args.job_ids
    ]

    async def action(client: AsyncClient) -> int:
        registration = await client.register(specs)
        if not args.wait:
            if args.json:
                _print_json([job.raw for job in registration.jobs])
            else:
                for job in registration.jobs:
                    print(f"{printable(job.job_id)} tracked ({printable(job.status)})")
            return 0
        return await _wait(client, args.job_ids, args.timeout, args.json)

    return _run_client(args, action)


def cmd_status(args: argparse.Namespace) -> int:
    """``jobwatchd status JOB_ID``."""
    job_id = validate_id(args.job_id, "JOB_ID")

    async def action(client: AsyncClient) -> int:
        job = dict((await client.get(job_id)).raw)
        if args.json:
            _print_json(job)
            return 0
        if sys.stdout.isatty():
            from rich.console import Console  # noqa: PLC0415 - only on a terminal

            from jobwatchd.terminal import print_job  # noqa: PLC0415

            print_job(Console(), job)
            return 0
        print(_summary(job))
        for key in (
            "service",
            "project_id",
            "account",
            "job_type",
            "registered_at",
            "updated_at",
            "polls",
            "next_poll_at",
        ):
            print(f"  {key}: {printable(job.get(key))}")
        if job.get("last_error"):
            print(f"  last_error: {printable(job['last_error'])}")
        for step in job.get("history", []):
            print(
                f"  {printable(step['at'])}  {printable(step['from'])} -> {printable(step['to'])}"
            )
        return 0

    return _run_client(args, action)


def cmd_list(args: argparse.Namespace) -> int:
    """``jobwatchd list``: follows the cursor until ``--limit`` jobs or the end."""

    labels = dict(parse_label_selector(value, "--label") for value in args.label)

    async def action(client: AsyncClient) -> int:
        jobs: list[dict[str, Any]] = []
        if args.limit is None or args.limit > 0:
            async with contextlib.aclosing(
                client.list(status=args.status or None, labels=labels, service=args.service or None)
            ) as listing:
                async for item in listing:
                    jobs.append(dict(item.raw))
                    if args.limit is not None and len(jobs) >= args.limit:
                        break
        if args.json:
            _print_json(jobs)
        elif sys.stdout.isatty():
            from rich.console import Console  # noqa: PLC0415 - only on a terminal

            from jobwatchd.terminal import print_jobs  # noqa: PLC0415

            print_jobs(Console(), jobs)
        else:
            for job in jobs:
                print(_summary(job))
        return 0

    return _run_client(args, action)


def cmd_wait(args: argparse.Namespace) -> int:
    """``jobwatchd wait JOB_ID...``: exit 0 all SUCCESS, 1 any failed, 3 partial,
    4 NOT_FOUND/ERROR/cancelled, 124 timed out, 2 on errors."""
    for job_id in args.job_ids:
        validate_id(job_id, "JOB_ID")
    return _run_client(args, lambda client: _wait(client, args.job_ids, args.timeout, args.json))


def _event_line(message: SseMessage) -> str:
    try:
        event = orjson.loads(message.data or "")
        data = event["data"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return printable(f"{message.id} {message.event} {message.data}")
    kind = "sub-job" if data.get("parent_job_id") else "job"
    parent = f" of {data['parent_job_id']}" if data.get("parent_job_id") else ""
    line = (
        f"{message.id} {event.get('time')} {kind} {event.get('subject')}{parent}"
        f" {data.get('from') or '-'} -> {data.get('to')}"
    )
    if data.get("error_code") or data.get("fail_reason"):
        line += f" error={data.get('error_code')} reason={data.get('fail_reason')!r}"
    return printable(line)


def cmd_events(args: argparse.Namespace) -> int:
    """``jobwatchd events``: recorded events, then with ``--follow`` new ones as they
    are recorded, reconnecting (and resuming) when the daemon restarts."""
    params = [("job", validate_id(job_id, "--job")) for job_id in args.job]
    params.extend(("type", event_type) for event_type in args.type)
    for selector in args.label:
        key, value = parse_label_selector(selector, "--label")
        params.append(("label", f"{key}={value}"))
    since = None if args.since == "now" else int(args.since)

    async def action(client: AsyncClient) -> int:
        out = sys.stdout
        try:
            async with contextlib.aclosing(
                client.follow(
                    params,
                    since=since,
                    follow=args.follow,
                    give_up_after=None if args.follow else EVENTS_RECONNECT_GRACE,
                    on_retry=_note,
                )
            ) as events:
                async for message in events:
                    out.write(
                        _event_json(message.data or "") if args.json else _event_line(message)
                    )
                    out.write("\n")
                    out.flush()
        except BrokenPipeError:
            # The reader went away (| head): not an error; keep the exit quiet.
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        return 0

    return _run_client(args, action)


def cmd_completion(args: argparse.Namespace) -> int:
    """``jobwatchd completion SHELL``: the shell code that completes jobwatchd's arguments."""
    try:
        from argcomplete.shell_integration import shellcode  # noqa: PLC0415
    except ImportError:
        return _fail("shell completion needs the argcomplete package")
    sys.stdout.write(shellcode(["jobwatchd"], shell=args.shell))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    """``jobwatchd cancel JOB_ID``: stop tracking."""
    job_id = validate_id(args.job_id, "JOB_ID")

    async def action(client: AsyncClient) -> int:
        try:
            await client.cancel(job_id)
        except ApiError as exc:
            _fail(str(exc))
            return 1
        print(f"{job_id} no longer tracked")
        return 0

    return _run_client(args, action)


REDELIVER_TIMEOUT = 3600.0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    """``jobwatchd dead-letters``: events sinks gave up on."""
    params = {"sink": args.sink} if args.sink else None

    async def action(client: AsyncClient) -> int:
        _, body = await client.request("GET", "/v1/dead-letters", params=params, ok=(200,))
        entries = body["dead_letters"]
        if args.json:
            _print_json(entries)
            return 0
        for entry in entries:
            line = (
                f"{entry['dead_lettered_at']} {entry['sink']} {entry['event_id']}"
                f" job={entry['job_id']} to={(entry['event'].get('data') or {}).get('to')}"
                f" attempts={entry['attempts']} reason={entry['reason']!r}"
            )
            print(printable(line))
        return 0

    return _run_client(args, action)


def cmd_redeliver(args: argparse.Namespace) -> int:
    """``jobwatchd redeliver``: exit 0 when every chosen dead letter was delivered, else 1."""
    if args.all == bool(args.event_ids):
        return _fail("redeliver: give EVENT_ID... or --all")
    body: dict[str, Any] = {"all": True} if args.all else {"event_ids": args.event_ids}
    if args.sink:
        body["sink"] = args.sink

    async def action(client: AsyncClient) -> int:
        _, report = await client.request(
            "POST", "/v1/dead-letters/redeliver", body=body, timeout=REDELIVER_TIMEOUT, ok=(200,)
        )
        if args.json:
            _print_json(report)
        else:
            for event_id in report["redelivered"]:
                print(f"{printable(event_id)} redelivered")
            for failure in report["failed"]:
                print(
                    printable(
                        f"{failure['event_id']} not delivered ({failure['sink']}):"
                        f" {failure['reason']}"
                    ),
                    file=sys.stderr,
                )
            for event_id in report["not_found"]:
                print(f"{printable(event_id)} is not a dead letter", file=sys.stderr)
        return 1 if report["failed"] or report["not_found"] else 0

    return _run_client(args, action)


# -- parser ------------------------------------------------------------------------


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _since(text: str) -> str:
    if text != "now" and not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError("must be an event id (a number) or 'now'")
    return text


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses NaN
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

    sim = command(
        "simulate",
        cmd_simulate,
        "Serve the simulated job APIs alone (ECS at the root, every service under /{service}).",
        config=False,
    )
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

    check = command("check-config", cmd_check_config, "Validate and print the effective config.")
    check.add_argument(
        "--credentials-dir",
        metavar="DIR",
        help="read secrets under /run/credentials/UNIT/ from DIR (the LoadCredential= sources)",
    )
    command("migrate", cmd_migrate, "Apply pending schema migrations to the configured store.")

    register = command("register", cmd_register, "Start tracking jobs.", client=True)
    register.add_argument("job_ids", nargs="+", metavar="JOB_ID")
    register.add_argument(
        "--service",
        choices=list(SERVICES),
        metavar="SERVICE",
        help="the service whose job API tracks the jobs (default ecs; one of"
        f" {', '.join(SERVICES)})",
    )
    register.add_argument("--project-id")
    register.add_argument("--account")
    register.add_argument("--label", action="append", default=[], metavar="K=V")
    register.add_argument("--job-timeout", type=_seconds, help="per-job timeout in seconds")
    register.add_argument("--wait", action="store_true", help="then wait like 'jobwatchd wait'")
    register.add_argument(
        "--timeout", type=_seconds, help="with --wait: give up after S seconds (no upper bound)"
    )
    register.add_argument(
        "--json",
        action="store_true",
        help="print the registered job objects; with --wait, the wait's summary",
    )

    status = command("status", cmd_status, "Show one job.", client=True)
    status.add_argument("job_id", metavar="JOB_ID")
    status.add_argument("--json", action="store_true")

    listing = command("list", cmd_list, "List tracked jobs.", client=True)
    listing.add_argument("--status")
    listing.add_argument("--service", choices=list(SERVICES), metavar="SERVICE")
    listing.add_argument("--label", action="append", default=[], metavar="K=V")
    listing.add_argument("--limit", type=int)
    listing.add_argument("--json", action="store_true")

    wait = command(
        "wait",
        cmd_wait,
        "Wait until jobs end: exit 0 all SUCCESS, 1 any failed, 3 partial (SUCCESS with"
        " failed sub-jobs), 4 NOT_FOUND/ERROR/cancelled, 124 timed out, 2 on errors.",
        client=True,
    )
    wait.add_argument("job_ids", nargs="+", metavar="JOB_ID")
    wait.add_argument(
        "--attach",
        action="store_true",
        help="attach to jobs the daemon already tracks (what wait always does: it never"
        " registers; a job it does not track is an error, exit 2)",
    )
    wait.add_argument(
        "--timeout",
        type=_seconds,
        help="give up after S seconds (exit 124; no upper bound, 'inf' for none);"
        " a daemon gone meanwhile is waited for until then",
    )
    wait.add_argument(
        "--json",
        action="store_true",
        help="print a JSON summary: outcome, exit code, per job its outcome, failed"
        " sub-jobs and final object",
    )

    events = command(
        "events",
        cmd_events,
        "Print recorded events (id, time, subject, from -> to); --follow for new ones.",
        client=True,
    )
    events.add_argument(
        "-f", "--follow", action="store_true", help="keep printing events as they are recorded"
    )
    events.add_argument("--job", action="append", default=[], metavar="JOB_ID")
    events.add_argument(
        "--type", action="append", default=[], choices=sorted(EVENT_TYPES), metavar="TYPE"
    )
    events.add_argument("--label", action="append", default=[], metavar="K=V")
    events.add_argument(
        "--since",
        type=_since,
        default="0",
        metavar="ID",
        help="events after the one with this id (the first column); 'now' for new ones only"
        " (default: every recorded event)",
    )
    events.add_argument("--json", action="store_true", help="one CloudEvent JSON per line")

    completion = command(
        "completion",
        cmd_completion,
        'Print shell code completing jobwatchd\'s arguments: eval "$(jobwatchd completion bash)".',
        config=False,
    )
    completion.add_argument("shell", choices=["bash", "zsh", "fish", "tcsh"])

    cancel = command("cancel", cmd_cancel, "Stop tracking a job.", client=True)
    cancel.add_argument("job_id", metavar="JOB_ID")

    dead = command("dead-letters", cmd_dead_letters, "List events sinks gave up on.", client=True)
    dead.add_argument("--sink", help="only this sink's dead letters")
    dead.add_argument("--json", action="store_true")

    redeliver = command(
        "redeliver",
        cmd_redeliver,
        "Send dead letters again: exit 0 when all were delivered, 1 otherwise.",
        client=True,
    )
    redeliver.add_argument("event_ids", nargs="*", metavar="EVENT_ID")
    redeliver.add_argument("--all", action="store_true", help="every dead letter (of --sink)")
    redeliver.add_argument("--sink", help="only this sink's dead letters")
    redeliver.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions
        with contextlib.suppress(ImportError):
            import argcomplete  # noqa: PLC0415

            argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        return _fail(f"config error: {exc}")
    except ValidationError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
