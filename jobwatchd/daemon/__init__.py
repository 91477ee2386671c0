"""The daemon: :mod:`.lifecycle` (wire, serve, drain), :mod:`.wiring` (parts from
the config), :mod:`.health` (readiness, metrics, watchdog), :mod:`.reload`
(SIGHUP) and :mod:`.startup` (why a start failed)."""

from jobwatchd.daemon.lifecycle import DRAIN_TIMEOUT, Daemon, run_daemon
from jobwatchd.daemon.startup import startup_failure
from jobwatchd.daemon.wiring import DATABASE_FILE, install_event_loop, open_store, state_path

__all__ = [
    "DATABASE_FILE",
    "DRAIN_TIMEOUT",
    "Daemon",
    "install_event_loop",
    "open_store",
    "run_daemon",
    "startup_failure",
    "state_path",
]
