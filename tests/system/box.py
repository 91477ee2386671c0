"""A throw-away Debian container whose PID 1 is systemd, for the system test.

The host's PID 1 need not be systemd: ``systemd-nspawn --boot`` starts one in a
container. A minimal bookworm rootfs is built once with mmdebstrap and cached;
each run boots a fresh overlay of it with a private network (loopback only).
Everything runs as root: building the rootfs, mounting the overlay and booting.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SUITE = "bookworm"
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "libnss-systemd",
    "python3",
    "python3-venv",
    "curl",
    "jq",
    "logrotate",
    "procps",
)
VAR_TMP = Path("/var/tmp")
ROOTFS = Path(os.environ.get("JOBWATCHD_SYSTEST_ROOT", VAR_TMP / "jobwatchd-systest-root"))
WHEEL_CACHE = Path(os.environ.get("JOBWATCHD_SYSTEST_CACHE", VAR_TMP / "jobwatchd-systest-cache"))
RUN_PREFIX = "jobwatchd-systest-run."
LOCK_PATH = VAR_TMP / "jobwatchd-systest.lock"
ROOTFS_STAMP = f"jobwatchd-systest rootfs v1 {SUITE} {','.join(PACKAGES)}"
# Units a container does not need and that would only slow its boot or write logs.
MASKED_UNITS = (
    "console-getty.service",
    "getty@tty1.service",
    "serial-getty@.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "logrotate.timer",
    "systemd-pstore.service",
)
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class BoxError(RuntimeError):
    """The container could not be built, booted or driven."""


def missing_requirement() -> str | None:
    """Why this machine cannot run the system test, or None when it can."""
    if sys.platform != "linux":
        return "needs Linux"
    if os.geteuid() != 0:
        return "needs root: it builds a rootfs, mounts an overlay and boots a container"
    for tool in ("systemd-nspawn", "mmdebstrap", "nsenter", "pgrep"):
        if shutil.which(tool) is None:
            return f"needs {tool} (`make system-tools` installs it as root with apt-get)"
    return None


@contextlib.contextmanager
def exclusive_lock() -> Iterator[None]:
    """One system test at a time on a machine (the rootfs cache is shared)."""
    VAR_TMP.mkdir(parents=True, exist_ok=True)
    with LOCK_PATH.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _apt_mirrors() -> tuple[str, str]:
    """The Debian and Debian-security mirrors this machine's apt uses."""
    uris: list[str] = []
    sources = Path("/etc/apt")
    for path in sorted(sources.glob("sources.list.d/*.sources")):
        for line in path.read_text(errors="replace").splitlines():
            if line.strip().startswith("URIs:"):
                uris.extend(line.split(":", 1)[1].split())
    for path in [sources / "sources.list", *sorted(sources.glob("sources.list.d/*.list"))]:
        if path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                uris.extend(re.findall(r"^\s*deb\s+(?:\[[^]]*\]\s+)?(https?://\S+)", line))
    main = next((u for u in uris if re.search(r"/debian/?$", u)), "http://deb.debian.org/debian")
    security = next(
        (u for u in uris if re.search(r"/debian-security/?$", u)),
        "http://deb.debian.org/debian-security",
    )
    return main, security


def ensure_rootfs(log: Path) -> None:
    """Build the cached rootfs unless it is there, built from the same package list."""
    stamp = ROOTFS / ".jobwatchd-systest-stamp"
    if stamp.is_file() and stamp.read_text().strip() == ROOTFS_STAMP:
        return
    main, security = _apt_mirrors()
    tmp = ROOTFS.with_name(f"{ROOTFS.name}.tmp.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    command = [
        "mmdebstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(tmp),
        f"deb {main} {SUITE} main",
        f"deb {main} {SUITE}-updates main",
        f"deb {security} {SUITE}-security main",
    ]
    with log.open("ab") as out:
        result = subprocess.run(command, stdout=out, stderr=out, timeout=600, check=False)
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BoxError(f"mmdebstrap failed with exit status {result.returncode}; see {log}")
    (tmp / "etc" / "hostname").write_text("systest\n")
    (tmp / "etc" / "machine-id").write_text("")  # a new one at each boot
    for unit in MASKED_UNITS:
        link = tmp / "etc" / "systemd" / "system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    (tmp / ".jobwatchd-systest-stamp").write_text(ROOTFS_STAMP + "\n")
    shutil.rmtree(ROOTFS, ignore_errors=True)
    tmp.rename(ROOTFS)


def copy_checkout(repo: Path, dest: Path) -> None:
    """Copy the checkout's tracked and untracked-but-not-ignored files to ``dest``."""
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = repo / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def build_wheels(source: Path, out: Path, log: Path) -> None:
    """The project's wheel and its pinned dependencies' wheels, for an offline install.

    The dependencies are cached by the hash of pyproject.toml, constraints.txt and
    the Python version, so a warm run only builds the project's own wheel.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((source / name).read_bytes())
    digest.update(version.encode())
    deps = WHEEL_CACHE / f"wheels-{digest.hexdigest()[:16]}"
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check"]
    with log.open("ab") as sink:
        if not (deps / ".complete").is_file():
            shutil.rmtree(deps, ignore_errors=True)
            deps.mkdir(parents=True)
            command = [*pip, "-c", str(source / "constraints.txt"), "--wheel-dir", str(deps)]
            result = subprocess.run(
                [*command, str(source)], stdout=sink, stderr=sink, timeout=600, check=False
            )
            if result.returncode != 0:
                raise BoxError(f"pip wheel of the dependencies failed; see {log}")
            for own in deps.glob("jobwatchd-*.whl"):
                own.unlink()
            (deps / ".complete").touch()
        result = subprocess.run(
            [*pip, "--no-deps", "--wheel-dir", str(out), str(source)],
            stdout=sink,
            stderr=sink,
            timeout=300,
            check=False,
        )
    if result.returncode != 0:
        raise BoxError(f"pip wheel of the project failed; see {log}")
    for wheel in deps.glob("*.whl"):
        shutil.copy2(wheel, out / wheel.name)


def _cgroup_dirs(name: str) -> list[Path]:
    return [
        Path("/sys/fs/cgroup/systemd") / name,
        Path("/sys/fs/cgroup/unified") / name,
        Path("/sys/fs/cgroup") / name,
    ]


def _remove_cgroup(name: str) -> None:
    for top in _cgroup_dirs(name):
        if not top.is_dir():
            continue
        for path in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir():
                with contextlib.suppress(OSError):
                    path.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def _pid_file(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _kill(pid: int | None, sig: signal.Signals) -> None:
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_gone(pid: int | None, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while pid and _alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if time.monotonic() > end:
            return False
        time.sleep(0.2)
    return True


def remove_run_dir(run: Path) -> None:
    """Stop whatever still runs from ``run`` (a killed earlier run), unmount and delete it."""
    nspawn = _pid_file(run / "nspawn.pid")
    leader = _pid_file(run / "leader.pid")
    if nspawn and _alive(nspawn) and str(run) in _cmdline(nspawn):
        _kill(nspawn, signal.SIGTERM)
        if not _wait_gone(nspawn, 20):
            _kill(nspawn, signal.SIGKILL)
    if leader and _alive(leader) and str(run) in _mountinfo(leader):
        _kill(leader, signal.SIGKILL)
        _wait_gone(leader, 10)
    root = run / "root"
    unmounted = not os.path.ismount(root)
    if not unmounted and subprocess.run(["umount", str(root)], check=False, timeout=60).returncode:
        subprocess.run(["umount", "-l", str(root)], check=False, timeout=60)
    shutil.rmtree(run, ignore_errors=True)
    _remove_cgroup(f"jobwatchd-systest.{run.name.rsplit('.', 1)[-1]}")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _mountinfo(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/mountinfo").read_text()
    except OSError:
        return ""


def remove_stale_runs() -> None:
    """Clean up after runs that were killed before they could clean up themselves."""
    for run in VAR_TMP.glob(RUN_PREFIX + "*"):
        if run.is_dir():
            remove_run_dir(run)


@dataclass
class Box:
    """A booted container over an overlay of the cached rootfs.

    ``run(...)`` executes a command inside it (all namespaces of its PID 1) with a
    clean environment. ``host_path(p)`` is where the container's ``p`` is on the
    host, to hand it files.
    """

    run_dir: Path
    logs: Path
    nspawn: subprocess.Popen[bytes] | None = None
    leader: int = 0
    boots: int = 0
    boot_seconds: list[float] = field(default_factory=list)

    @property
    def root(self) -> Path:
        """The container's ``/`` on the host."""
        return self.run_dir / "root"

    @property
    def cgroup(self) -> str:
        """The host cgroup the container runs in."""
        return f"jobwatchd-systest.{self.run_dir.name.rsplit('.', 1)[-1]}"

    def host_path(self, path: str) -> Path:
        """Where the container's absolute ``path`` is on the host."""
        return self.root / path.lstrip("/")

    def mount(self) -> None:
        """Mount a fresh overlay of the cached rootfs at :attr:`root`."""
        for name in ("upper", "work", "root"):
            (self.run_dir / name).mkdir(parents=True, exist_ok=True)
        options = (
            f"lowerdir={ROOTFS},upperdir={self.run_dir / 'upper'},workdir={self.run_dir / 'work'}"
        )
        subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(self.root)],
            check=True,
            timeout=60,
        )

    def boot(self, timeout: float = 120) -> None:
        """Start systemd in the container and wait until the boot has finished."""
        started = time.monotonic()
        # nspawn --keep-unit puts the container in <its own cgroup>/payload: give it
        # a cgroup of its own so that nothing lands in the host's root cgroup.
        moves = []
        for directory in _cgroup_dirs(self.cgroup)[:2]:
            if directory.parent.is_dir():
                directory.mkdir(exist_ok=True)
                moves.append(f"echo $$ > {directory}/cgroup.procs")
        # --register=no --keep-unit: no machined, no systemd on the host to ask.
        # --system-call-filter=bpf lets the container's systemd load the BPF
        # programs without which IPAddressDeny= is silently ignored.
        nspawn = (
            f"exec setsid systemd-nspawn -D {self.root} -M systest-{os.getpid()} --boot"
            " --register=no --keep-unit --private-network --system-call-filter=bpf"
            " --console=read-only"
        )
        log = (self.logs / "nspawn.log").open("ab")
        self.nspawn = subprocess.Popen(
            ["/bin/sh", "-c", "; ".join([*moves, nspawn])],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        (self.run_dir / "nspawn.pid").write_text(f"{self.nspawn.pid}\n")
        self.leader = self._find_leader(deadline=time.monotonic() + 30)
        (self.run_dir / "leader.pid").write_text(f"{self.leader}\n")
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline and self.nspawn.poll() is None:
            result = self.run(
                ["systemctl", "is-system-running", "--wait"],
                timeout=max(1.0, deadline - time.monotonic()),
            )
            state = result.stdout.strip()
            if state in ("running", "degraded"):
                self.boots += 1
                self.boot_seconds.append(time.monotonic() - started)
                return
            time.sleep(0.5)
        raise BoxError(f"systemd did not finish booting (state {state or 'none'}); see {self.logs}")

    def _find_leader(self, deadline: float) -> int:
        assert self.nspawn is not None
        while time.monotonic() < deadline:
            if self.nspawn.poll() is not None:
                break
            found = subprocess.run(
                ["pgrep", "-P", str(self.nspawn.pid), "-x", "systemd"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.split()
            if found:
                return int(found[0])
            time.sleep(0.1)
        tail = (self.logs / "nspawn.log").read_text(errors="replace")[-2000:]
        raise BoxError(f"systemd-nspawn did not start systemd: {tail}")

    def shutdown(self) -> None:
        """Power the container off (SIGTERM to nspawn is an orderly poweroff)."""
        if self.nspawn is None:
            return
        if self.nspawn.poll() is None:
            self.nspawn.terminate()
            try:
                self.nspawn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
                _kill(self.leader, signal.SIGKILL)
                self.nspawn.wait(timeout=30)
        self.nspawn = None
        self.leader = 0

    def destroy(self) -> None:
        """Power off, unmount and delete the overlay and the cgroup."""
        self.shutdown()
        remove_run_dir(self.run_dir)

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 60,
        input: str | None = None,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the container with a clean environment."""
        if not self.leader:
            raise BoxError("the container is not running")
        command = [
            "nsenter",
            "-t",
            str(self.leader),
            "-a",
            "--",
            "/usr/bin/env",
            "-i",
            f"PATH={CONTAINER_PATH}",
            "LANG=C.UTF-8",
            "TERM=dumb",
            "SYSTEMD_PAGER=cat",
            "SYSTEMD_COLORS=0",
            *argv,
        ]
        try:
            result = subprocess.run(
                command, input=input, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise BoxError(f"timed out after {timeout} s: {' '.join(argv)}") from exc
        if check and result.returncode != 0:
            raise BoxError(
                f"exit status {result.returncode}: {' '.join(argv)}\n{result.stdout}{result.stderr}"
            )
        return result

    def sh(self, script: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        """Run a shell script inside the container (see :meth:`run`)."""
        return self.run(["/bin/sh", "-c", script], **kwargs)  # type: ignore[arg-type]

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        """Create or replace the container's file ``path`` (root-owned).

        Written from inside: the container mounts its own /run and /tmp over
        the overlay, so the host cannot reach them.
        """
        script = f'mkdir -p "$(dirname {path})" && cat > {path} && chmod {mode:o} {path}'
        self.run(["/bin/sh", "-c", script], input=text, check=True)

    def curl_json(self, method: str, url: str, body: object | None = None) -> object:
        """A JSON request from inside the container; raises BoxError on a non-2xx answer."""
        argv = ["curl", "-fsS", "-m", "10", "-X", method, url]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
        result = self.run(argv, timeout=20)
        if result.returncode != 0:
            raise BoxError(
                f"{method} {url}: curl exit {result.returncode}: {result.stderr.strip()}"
            )
        return json.loads(result.stdout)


def wait_for(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll ``predicate`` until it holds; raise BoxError naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(BoxError):
            if predicate():
                return
        if time.monotonic() > deadline:
            raise BoxError(f"not within {seconds} s: {what}")
        time.sleep(0.5)


@contextlib.contextmanager
def booted_box(repo: Path) -> Iterator[Box]:
    """Build (or reuse) the rootfs, boot a fresh container with the checkout's wheels
    in ``/root/systest/wheels`` and a copy of the checkout in ``/root/systest/src``;
    power it off and remove it afterwards, whatever happens."""
    with exclusive_lock():
        remove_stale_runs()
        run_dir = Path(tempfile.mkdtemp(prefix=RUN_PREFIX, dir=VAR_TMP))
        logs = Path(tempfile.mkdtemp(prefix="jobwatchd-systest-logs.", dir=VAR_TMP))
        box = Box(run_dir=run_dir, logs=logs)
        try:
            ensure_rootfs(logs / "mmdebstrap.log")
            box.mount()
            source = box.host_path("/root/systest/src")
            source.mkdir(parents=True)
            copy_checkout(repo, source)
            wheels = box.host_path("/root/systest/wheels")
            wheels.mkdir(parents=True)
            with tempfile.TemporaryDirectory(dir=VAR_TMP) as build:
                build_source = Path(build) / "src"
                shutil.copytree(source, build_source)
                build_wheels(build_source, wheels, logs / "pip-wheel.log")
            journald = box.host_path("/etc/systemd/journald.conf.d/systest.conf")
            journald.parent.mkdir(parents=True, exist_ok=True)
            # PID 1 logs at debug level during the checks: journald must keep it all
            journald.write_text("[Journal]\nRateLimitIntervalSec=0\nRateLimitBurst=0\n")
            box.boot()
            yield box
        finally:
            with contextlib.suppress(Exception):
                if box.leader:
                    journal = box.run(
                        ["journalctl", "--no-pager", "-o", "short-monotonic"], timeout=60
                    )
                    (logs / "journal.txt").write_text(journal.stdout)
            box.destroy()
            _keep_last_logs(10)


def _keep_last_logs(count: int) -> None:
    runs = sorted(VAR_TMP.glob("jobwatchd-systest-logs.*"), key=lambda p: p.stat().st_mtime)
    for old in runs[:-count]:
        shutil.rmtree(old, ignore_errors=True)


__all__ = [
    "Box",
    "BoxError",
    "booted_box",
    "missing_requirement",
    "wait_for",
]
