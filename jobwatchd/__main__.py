"""Allow ``python -m jobwatchd``."""

from jobwatchd.cli import main

raise SystemExit(main())
