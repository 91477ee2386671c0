"""The vendor's ``SDK-HMAC-SHA256`` request signing (the algorithm of the
official SDK's ``huaweicloudsdkcore.signer.Signer``), as pure functions: the
caller supplies the time. :func:`canonical_request`, :func:`string_to_sign`
and :func:`signature` are its parts, shared with the simulator's verification.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote, unquote

from yarl import URL

ALGORITHM: Final = "SDK-HMAC-SHA256"
DATE_FORMAT: Final = "%Y%m%dT%H%M%SZ"
"""The format of ``X-Sdk-Date`` (UTC)."""
EMPTY_BODY_SHA256: Final = hashlib.sha256(b"").hexdigest()
ENV_SECURITY_TOKEN: Final = "HUAWEICLOUD_SDK_SECURITY_TOKEN"
"""The official SDK's variable for the security token of temporary AK/SK."""

HEADER_DATE: Final = "X-Sdk-Date"
HEADER_CONTENT_SHA256: Final = "X-Sdk-Content-Sha256"
UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"

_AUTHORIZATION = re.compile(
    r"(?P<algorithm>[A-Z0-9-]+) Access=(?P<ak>[^,\s]+), SignedHeaders=(?P<signed>[^,\s]+),"
    r" Signature=(?P<signature>[0-9a-f]+)"
)


def format_sdk_date(moment: datetime) -> str:
    """``moment`` as an ``X-Sdk-Date`` (``20260101T120000Z``); naive means UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(DATE_FORMAT)


def _url_encode(text: str) -> str:
    return quote(text, safe="~")


def _canonical_uri(raw_path: str) -> str:
    # Decoded, split, re-encoded segment by segment, always ending in "/":
    # exactly the SDK's rule, so an encoded "%2F" becomes a separator.
    path = "/".join(_url_encode(segment) for segment in unquote(raw_path).split("/"))
    return path if path.endswith("/") else path + "/"


def _canonical_query(pairs: Sequence[tuple[str, str]]) -> str:
    return "&".join(f"{_url_encode(key)}={_url_encode(value)}" for key, value in sorted(pairs))


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in lowered:
            raise ValueError(f"header {name!r} is given twice (names are case-insensitive)")
        lowered[key] = str(value).strip()
    return lowered


def signed_header_names(headers: Mapping[str, str]) -> list[str]:
    """The headers the SDK signs: all of them but names with ``_``, lowercased, sorted."""
    return sorted(name.lower() for name in headers if "_" not in name)


def payload_hash(headers: Mapping[str, str], body: bytes) -> str:
    """The hex SHA-256 of ``body``; an empty body has the empty hash, and a
    non-empty one may be declared by ``X-Sdk-Content-Sha256`` (``UNSIGNED-PAYLOAD``)."""
    if not body:
        return EMPTY_BODY_SHA256
    declared = _lower_headers(headers).get(HEADER_CONTENT_SHA256.lower())
    return declared or hashlib.sha256(body).hexdigest()


def canonical_request(
    method: str,
    url: URL,
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    body: bytes = b"",
) -> str:
    """The canonical request: method, URI, query, headers, signed header names, payload hash.

    ``url`` supplies the (encoded) path and the (decoded) query; ``headers``
    must hold every name in ``signed_headers`` (in any case).
    """
    lowered = _lower_headers(headers)
    missing = [name for name in signed_headers if name not in lowered]
    if missing:
        raise ValueError(f"signed header(s) missing: {', '.join(missing)}")
    canonical_headers = "".join(f"{name}:{lowered[name]}\n" for name in signed_headers)
    return "\n".join(
        (
            method.upper(),
            _canonical_uri(url.raw_path),
            _canonical_query(list(url.query.items())),
            canonical_headers,
            ";".join(signed_headers),
            payload_hash(headers, body),
        )
    )


def string_to_sign(canonical: str, sdk_date: str) -> str:
    """What the HMAC signs: the algorithm, the ``X-Sdk-Date`` and the canonical request's hash."""
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{sdk_date}\n{digest}"


def signature(sk: str, to_sign: str) -> str:
    """The hex HMAC-SHA256 of ``to_sign`` keyed by the secret key."""
    return hmac.digest(sk.encode("utf-8"), to_sign.encode("utf-8"), "sha256").hex()


def parse_authorization(value: str) -> tuple[str, list[str], str] | None:
    """``(access_key, signed_headers, signature)`` of an ``SDK-HMAC-SHA256``
    ``Authorization`` header, or None when it is not one."""
    match = _AUTHORIZATION.fullmatch(value.strip())
    if match is None or match["algorithm"] != ALGORITHM:
        return None
    return match["ak"], match["signed"].split(";"), match["signature"]


def sign(
    *,
    method: str,
    url: URL,
    headers: Mapping[str, str],
    ak: str,
    sk: str,
    now: datetime,
    body: bytes = b"",
) -> dict[str, str]:
    """Sign one request; return the headers to add to ``headers`` to send it.

    Always ``X-Sdk-Date`` (from ``now``) and ``Authorization``; ``Host`` when
    ``headers`` has none (as aiohttp would send it); ``X-Sdk-Content-Sha256:
    UNSIGNED-PAYLOAD`` when ``Content-Type`` is neither JSON nor BSON, as the
    SDK does. Every header in ``headers`` whose name has no ``_`` is signed.
    Pure: no clock, no I/O.
    """
    lowered = {name.lower() for name in headers}
    if HEADER_DATE.lower() in lowered:
        raise ValueError(f"{HEADER_DATE} is set by sign(), not by the caller")
    added: dict[str, str] = {}
    # The SDK looks this one up case-sensitively; matching it keeps signatures equal.
    content_type = headers.get("Content-Type")
    if content_type and not content_type.startswith(("application/json", "application/bson")):
        added[HEADER_CONTENT_SHA256] = UNSIGNED_PAYLOAD
    sdk_date = format_sdk_date(now)
    added[HEADER_DATE] = sdk_date
    if "host" not in lowered:
        host = url.host_port_subcomponent
        if host is None:
            raise ValueError("the URL must be absolute")
        added["Host"] = host
    full = {**headers, **added}
    names = signed_header_names(full)
    canonical = canonical_request(method, url, full, names, body)
    signed = signature(sk, string_to_sign(canonical, sdk_date))
    added["Authorization"] = (
        f"{ALGORITHM} Access={ak}, SignedHeaders={';'.join(names)}, Signature={signed}"
    )
    return added
