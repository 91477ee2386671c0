"""The vendor's error bodies, common to its services and IAM, and how much of any
answer jobwatchd reads. Pure."""

from __future__ import annotations

from collections.abc import Mapping

MAX_RESPONSE_SIZE = 1024**2
"""Default bound on an upstream answer's body, in bytes, after decompression."""


def vendor_error(body: object) -> tuple[str | None, str | None]:
    """The (code, message) of a vendor error body, in any of its three shapes:
    ``{"error": {"code", "message"}}``, the gateway's ``{"error_code",
    "error_msg"}``, or ``code``/``message`` at the top level."""
    if not isinstance(body, Mapping):
        return None, None
    nested = body.get("error")
    if isinstance(nested, Mapping):
        body = nested
    for code_key, message_key in (("code", "message"), ("error_code", "error_msg")):
        code, message = body.get(code_key), body.get(message_key)
        if isinstance(code, str) or isinstance(message, str):
            return (
                code if isinstance(code, str) else None,
                message if isinstance(message, str) else None,
            )
    return None, None
