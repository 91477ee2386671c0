"""A throwaway PostgreSQL server for the tests: Debian's server binaries,
``initdb`` into a temporary directory, ``pg_ctl start`` on a free port.

Never a mock: the PostgreSQL store's tests run against this real server. The
test command installs the binaries (``make system-tools``: Debian's
``postgresql`` package); when they are missing the tests that need them fail
with a message saying so. initdb refuses to run as root, so as root the server
runs as the ``postgres`` user (or ``nobody``) in a directory it owns.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "jobwatchd"
PASSWORD_USER = "jobwatchd_pw"
"""A role that must authenticate with a password (SCRAM) over TCP."""
PASSWORD = "s3cret-test-password"
START_TIMEOUT = 60.0
_BIN_DIRS = "/usr/lib/postgresql"
_HOST = "127.0.0.1"

MISSING = (
    "PostgreSQL server binaries (initdb, pg_ctl, psql) not found in {where}: install"
    " Debian's 'postgresql' package (`make system-tools` does it as root), or point"
    " $JOBWATCHD_PG_BINDIR at a directory holding them"
)


class PostgresMissing(RuntimeError):
    """The server binaries are not installed."""


def find_bin_dir(environ: dict[str, str] | None = None) -> Path:
    """The directory of ``initdb``/``pg_ctl``/``psql``: ``$JOBWATCHD_PG_BINDIR``,
    else the newest ``/usr/lib/postgresql/<version>/bin`` (where Debian puts
    them, off ``$PATH``), else ``$PATH``."""
    env = os.environ if environ is None else environ
    candidates: list[Path] = []
    if env.get("JOBWATCHD_PG_BINDIR"):
        candidates.append(Path(env["JOBWATCHD_PG_BINDIR"]))
    else:
        versions = sorted(
            Path(_BIN_DIRS).glob("*/bin"),
            key=lambda path: [int(n) for n in re.findall(r"\d+", path.parent.name)],
            reverse=True,
        )
        candidates += versions
        initdb = shutil.which("initdb")
        if initdb:
            candidates.append(Path(initdb).resolve().parent)
    for directory in candidates:
        if all((directory / tool).is_file() for tool in ("initdb", "pg_ctl", "psql")):
            return directory
    where = ", ".join(str(c) for c in candidates) or f"{_BIN_DIRS}/*/bin or $PATH"
    raise PostgresMissing(MISSING.format(where=where))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class _RunAs:
    """Who runs the server: ourselves, or (as root) an unprivileged user."""

    uid: int | None
    gid: int | None
    home: str

    @classmethod
    def choose(cls) -> _RunAs:
        if os.geteuid() != 0:
            return cls(None, None, os.environ.get("HOME", "/"))
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                entry = pwd.getpwnam(name)
                return cls(entry.pw_uid, entry.pw_gid, "/")
        raise PostgresMissing("running as root and neither 'postgres' nor 'nobody' exists")

    def chown(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)


class PostgresServer:
    """One running throwaway cluster; :meth:`stop` removes everything."""

    def __init__(self, bin_dir: Path, root: Path, run_as: _RunAs) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data_dir = root / "data"
        self.socket_dir = root
        self.log_file = root / "server.log"
        self.run_as = run_as
        self.port = 0
        self._names = itertools.count(1)

    def _run(self, args: Sequence[str], *, timeout: float = START_TIMEOUT) -> str:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self.run_as.home,
            "LC_ALL": "C",
            "PGHOST": str(self.socket_dir),
            "PGUSER": SUPERUSER,
        }
        if self.port:
            env["PGPORT"] = str(self.port)
        done = subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            user=self.run_as.uid,
            group=self.run_as.gid,
            extra_groups=[] if self.run_as.uid is not None else None,
            cwd=self.root,
            check=False,
        )
        if done.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise RuntimeError(
                f"{args[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}\n{log}"
            )
        return done.stdout

    def start(self) -> None:
        """initdb, a pg_hba.conf of our own, then start on a free port."""
        self._run(
            [
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )
        (self.data_dir / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"host all {PASSWORD_USER} {_HOST}/32 scram-sha-256\n"
            f"host all all {_HOST}/32 trust\n"
        )
        for attempt in range(5):  # a port picked free can be taken before we bind it
            self.port = _free_port()
            try:
                self._pg_ctl_start()
                break
            except RuntimeError:
                if attempt == 4:
                    raise
        self.psql(f"CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD}'")

    def _pg_ctl_start(self) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.socket_dir}",
                f"-c listen_addresses={_HOST}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=300",
            ]
        )
        self._run(
            [
                *("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir)),
                *("-l", str(self.log_file), "-o", options),
            ]
        )

    def pause(self) -> None:
        """Shut the server down (connections are cut), keeping its data and port."""
        self._run(["pg_ctl", "stop", "-m", "fast", "-w", "-D", str(self.data_dir)])

    def resume(self) -> None:
        """Start a paused server again, on the same port."""
        self._pg_ctl_start()

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` as the superuser; its output (unaligned, tuples only)."""
        return self._run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql]
        )

    def dsn(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        """A ``postgresql://`` URL over TCP (no password in it)."""
        return f"postgresql://{user}@{_HOST}:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database (owned by the superuser); its name."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name}")
        self.psql(f"GRANT ALL ON SCHEMA public TO {PASSWORD_USER}", database=name)
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, disconnecting whoever is still on it."""
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        """Stop the server at once and delete its files."""
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run(["pg_ctl", "stop", "-m", "immediate", "-w", "-D", str(self.data_dir)])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throwaway server; stop it and remove its files on exit."""
    bin_dir = find_bin_dir()
    run_as = _RunAs.choose()
    # Under /tmp, not pytest's tmp_path: that is private to root and the
    # server user could not reach it.
    root = Path(tempfile.mkdtemp(prefix="jobwatchd-pg-"))
    run_as.chown(root)
    server = PostgresServer(bin_dir, root, run_as)
    try:
        server.start()
        yield server
    finally:
        server.stop()
