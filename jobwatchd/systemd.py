"""systemd integration: sd_notify readiness, status, reload and watchdog messages.

The protocol is one datagram per message on the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (``@`` for the abstract namespace). Outside systemd the
variable is unset and every call is a no-op.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping


def notify_message(**fields: str | int) -> bytes:
    """Encode ``KEY=value`` lines, e.g. ``notify_message(READY=1, STATUS="ok")``."""
    return "\n".join(f"{key}={value}" for key, value in fields.items()).encode()


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between watchdog pings (half of ``WATCHDOG_USEC``), or None when
    the watchdog is off or meant for another process (``WATCHDOG_PID``)."""
    usec = environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    target = environ.get("WATCHDOG_PID")
    if target and target.isdigit() and int(target) != pid:
        return None
    return int(usec) / 2_000_000


def monotonic_usec() -> int:
    """``CLOCK_MONOTONIC`` in microseconds, for ``MONOTONIC_USEC`` on reload."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends sd_notify messages; silent when not started by systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if address.startswith("@"):
            self.address = "\0" + address[1:]
        elif address.startswith("/"):
            self.address = address
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """Whether there is a socket to notify."""
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """Send one message; False (never an exception) when it could not be sent."""
        if self.address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
            self._socket.sendto(notify_message(**fields), self.address)
        except OSError:
            return False
        return True

    def close(self) -> None:
        """Close the socket."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
