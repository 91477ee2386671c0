"""Which requests a browser page may have sent, and which of those are refused.
Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from jobwatchd.config import ApiConfig

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The body types an HTML form can send; only text/plain can carry a JSON body.
FORM_ONLY_TYPES = frozenset({"text/plain", "multipart/form-data"})


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    """Which names a request may use for this daemon, and whether ``Host`` is checked."""

    names: frozenset[str]
    extra_names: frozenset[str]
    check_host: bool

    @classmethod
    def for_api(cls, api: ApiConfig) -> OriginPolicy:
        """Loopback names, the listen address and ``api.allowed_hosts``.

        A Unix socket has no Host to check; nor has a wildcard listen address
        (which requires a token) unless ``allowed_hosts`` names what to accept.
        """
        listen = api.host
        wildcard = listen in WILDCARD_HOSTS
        names = LOOPBACK_NAMES | set(api.allowed_hosts)
        if listen is not None and not wildcard:
            names |= {listen}
        check_host = listen is not None and (not wildcard or bool(api.allowed_hosts))
        return cls(frozenset(names), frozenset(api.allowed_hosts), check_host)

    def allows(self, authority: str) -> bool:
        """Whether ``host[:port]`` names this daemon."""
        try:
            host = urlsplit(f"//{authority}").hostname
        except ValueError:
            return False
        return host is not None and host in self.names

    def allows_origin(self, origin: str, host: str) -> bool:
        """Whether a page at ``origin`` may call: this daemon's own origin as the
        request names it, or an ``api.allowed_hosts`` name (another port on
        localhost is another site's page)."""
        try:
            parts = urlsplit(origin)
            origin_host = parts.hostname
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or origin_host is None:
            return False
        return parts.netloc == host or origin_host in self.extra_names


def browser_refusal(
    policy: OriginPolicy,
    *,
    method: str,
    host: str,
    origin: str | None,
    fetch_site: str | None,
    content_type: str | None,
) -> tuple[int, str, str] | None:
    """Why a request that a browser page may have sent is refused, or None.

    A page on another site can reach a loopback daemon: DNS rebinding sends our
    address under its own name (421 unless ``Host`` names this daemon); a
    cross-site request carries ``Origin`` or ``Sec-Fetch-Site`` (403 unless it is
    this daemon's own origin); and a form can post JSON without either only as
    ``text/plain`` (old browsers), which no client of this API sends (415).
    """
    if policy.check_host and not policy.allows(host):
        return 421, "Misdirected request", "the Host header does not name this daemon"
    if fetch_site == "cross-site" or (
        origin is not None and not policy.allows_origin(origin, host)
    ):
        return 403, "Forbidden", "cross-site requests are refused"
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if method not in SAFE_METHODS and media_type in FORM_ONLY_TYPES:
        return (
            415,
            "Unsupported media type",
            f"{media_type} bodies are refused; send Content-Type: application/json",
        )
    return None
