"""The product's simulator (:mod:`jobwatchd.cloud.simulator`) as its own process, on uvloop.

``jobwatchd simulate`` runs on asyncio's default loop; the benchmarks run the
same :class:`~jobwatchd.cloud.simulator.Simulator` on uvloop (like the daemon), so
the simulator is less of a ceiling for the clients measured against it.

Usage: python -m bench.simserver --port PORT [--speed N] [--seed S]
"""

from __future__ import annotations

import argparse

from jobwatchd.cloud.simulator import Faults, run_standalone
from jobwatchd.daemon import install_event_loop


def main() -> None:
    """Serve until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    install_event_loop()
    run_standalone(
        host="127.0.0.1",
        port=args.port,
        speed=args.speed,
        token=None,
        faults=Faults(),
        demo_jobs=0,
        seed=args.seed,
    )


if __name__ == "__main__":
    main()
