"""What the tests share: one home per kind of helper.

- :mod:`tests.helpers.waiting`: wait on a condition with a deadline.
- :mod:`tests.helpers.config`: daemon config files built from keyword options.
- :mod:`tests.helpers.servers`: aiohttp servers (the simulator, hostile upstreams,
  webhook receivers) on a thread of their own.
- :mod:`tests.helpers.daemon`: the daemon in-process, or as a subprocess.
- :mod:`tests.helpers.http`: a blocking HTTP call.
- :mod:`tests.helpers.events`: reading and checking the file sink's events.
- :mod:`tests.helpers.hostile_upstream`, :mod:`tests.helpers.vendor`,
  :mod:`tests.helpers.pg`, :mod:`tests.helpers.plugins`: a hostile cloud, the
  vendor's example documents, a throwaway PostgreSQL server, sink plugins.

``tests/conftest.py`` holds only fixtures; no test module imports from it.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
"""The checkout's root."""
