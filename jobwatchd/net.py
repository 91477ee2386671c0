"""HTTP helpers shared by every outbound client (the cloud's, the webhook sink's):
the User-Agent, proxies, ``Retry-After``, redirect origins and bounded bodies."""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import urllib.request

import aiohttp
from yarl import URL

from jobwatchd import __version__
from jobwatchd.models import bounded_text

USER_AGENT = f"jobwatchd/{__version__}"


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:  # asctime form: RFC 9110 dates are always GMT
            moment = moment.replace(tzinfo=dt.UTC)
        seconds = moment.timestamp() - now
    if math.isnan(seconds):
        return None
    return max(0.0, min(seconds, 3600.0))


def location_origin(location: str | None) -> str:
    """``scheme://host[:port]`` of a redirect's ``Location``: its path and query
    may carry anything, the origin says where upstream wanted us to go."""
    if not location:
        return "no Location"
    try:
        target = URL(location)
    except ValueError:
        return "an unparsable Location"
    if not target.is_absolute():
        return "a relative Location"
    try:
        return bounded_text(str(target.origin()), 256)
    except ValueError:
        return "an unparsable Location"


async def read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body of ``response``, or None when it is over ``limit`` bytes (after
    decompression); then the connection is closed, not drained.

    A body declared by ``Content-Length`` within the limit and not compressed
    is read in one go, as before; otherwise it is read chunk by chunk and given
    up on as soon as it passes the limit. aiohttp decompresses with flow
    control, so a compressed bomb costs at most about one chunk past the limit.
    """
    length = response.content_length
    if length is not None and length > limit:
        response.close()
        return None
    if length is not None and "Content-Encoding" not in response.headers:
        return await response.read()  # the parser stops at Content-Length
    chunks: list[bytes] = []
    size = 0
    stream = response.content
    while chunk := await stream.readany():
        size += len(chunk)
        if size > limit:
            response.close()
            return None
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def proxy_for(url: URL) -> str | None:
    """The proxy for ``url`` from ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``.

    Resolved once per client rather than per request: aiohttp's ``trust_env``
    re-reads the environment and ``~/.netrc`` on every request, which
    dominated the cost of a poll.
    """
    if url.host is None or urllib.request.proxy_bypass(url.host):
        return None
    return urllib.request.getproxies().get(url.scheme)
