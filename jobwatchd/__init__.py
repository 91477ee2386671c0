"""jobwatchd: a durable job-tracking daemon for ECS asynchronous jobs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("jobwatchd")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
