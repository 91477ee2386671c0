"""Validation of everything an API request may carry (docs/http-api.md). Pure, no I/O.

``job_id`` and ``project_id`` end up in an upstream URL path, so only
``[A-Za-z0-9_-]{1,64}`` passes: no slash, dot, percent or whitespace.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_LABELS = 32
MAX_LABEL_LENGTH = 256
MAX_TIMEOUT_SECONDS = 366 * 24 * 3600.0


class ValidationError(Exception):
    """A request field is invalid; ``field`` is its JSON path."""

    # A plain exception, not a frozen dataclass: tools that attach notes to
    # exceptions (pytest, hypothesis, TaskGroup) must be able to set attributes.
    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def is_valid_id(value: object) -> bool:
    """Whether ``value`` is a safe job or project identifier."""
    return isinstance(value, str) and _ID_PATTERN.fullmatch(value) is not None


def validate_id(value: object, field: str) -> str:
    """Return ``value`` if it is a safe identifier, else raise naming ``field``."""
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string")
    if not is_valid_id(value):
        raise ValidationError(field, "must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")
    return value


def validate_labels(value: object, field: str = "labels") -> dict[str, str]:
    """Return the labels as a dict, or raise naming the offending label."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(field, "must be an object of string keys and values")
    if len(value) > MAX_LABELS:
        raise ValidationError(field, f"at most {MAX_LABELS} labels")
    labels: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_LABEL_LENGTH:
            raise ValidationError(field, f"keys must be strings of 1-{MAX_LABEL_LENGTH} characters")
        if not isinstance(item, str) or len(item) > MAX_LABEL_LENGTH:
            raise ValidationError(
                f"{field}.{key}", f"must be a string of at most {MAX_LABEL_LENGTH} characters"
            )
        if "\x00" in key or "\x00" in item:
            # NUL cannot be stored by every store (PostgreSQL's jsonb refuses it).
            raise ValidationError(f"{field}.{key.replace(chr(0), '')}", "must not contain NUL")
        labels[key] = item
    return labels


def parse_label_selector(value: str, field: str = "label") -> tuple[str, str]:
    """Parse ``k=v`` (as used by ``?label=`` and ``--label``)."""
    key, sep, item = value.partition("=")
    if not sep or not key:
        raise ValidationError(field, "must look like key=value")
    if len(key) > MAX_LABEL_LENGTH or len(item) > MAX_LABEL_LENGTH:
        raise ValidationError(field, f"keys and values are at most {MAX_LABEL_LENGTH} characters")
    return key, item


def validate_timeout(value: object, field: str = "timeout") -> float | None:
    """A per-job timeout in seconds (a positive number), or None for the default."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(field, "must be a number of seconds")
    seconds = float(value)
    if not 0 < seconds <= MAX_TIMEOUT_SECONDS:
        raise ValidationError(field, f"must be between 0 and {MAX_TIMEOUT_SECONDS:.0f} seconds")
    return seconds
