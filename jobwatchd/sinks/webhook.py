"""The ``webhook`` sink (docs/sinks.md): POST each CloudEvent to a URL.

- Body: the CloudEvent as recorded, ``Content-Type: application/cloudevents+json``;
  with ``batch_max > 1`` a JSON array of events,
  ``application/cloudevents-batch+json``.
- Signing (Standard Webhooks) with every configured secret: ``webhook-id``
  (the event id; for a batch of several, a UUIDv5 of their ids),
  ``webhook-timestamp`` (of the attempt) and ``webhook-signature``
  (``v1,<base64 HMAC-SHA256 of id.timestamp.body>``, one per secret,
  space-separated, so a receiver can rotate).
- 2xx acknowledges. Connection errors, timeouts, 408, 429 and 5xx are retried
  with exponential backoff and full jitter, or after ``Retry-After`` (which
  holds every request of the sink), until an event is ``max_retry_age`` old
  (counted from its CloudEvent ``time``, when the transition was observed, so
  a restart during an outage does not start the count again); any other
  answer, or running out of time, moves the events to the sink's dead-letter
  file (:mod:`jobwatchd.sinks.deadletters`), which counts as handled.

The runner (:mod:`jobwatchd.engine.delivery`) calls :meth:`WebhookSink.deliver` for
up to ``concurrency`` batches at once and never for two batches holding events
of the same job, so per-job order holds while jobs proceed independently.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import random
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import aiohttp
from yarl import URL

from jobwatchd.logs import get_logger
from jobwatchd.models import bounded_text
from jobwatchd.net import USER_AGENT, location_origin, parse_retry_after, proxy_for, read_bounded
from jobwatchd.options import (
    SECRET_MASK,
    ConfigError,
    Secret,
    expect_int,
    expect_str,
    expect_url,
    field_defaults,
    parse_duration,
    read_secret,
    redact_url,
    toml_duration,
    type_error,
)
from jobwatchd.sinks import Delivery, OptionScope, SinkConfig, SinkContext
from jobwatchd.sinks.deadletters import DeadLetter, DeadLetterStore

log = get_logger("jobwatchd.webhook")

CONTENT_TYPE: Final = "application/cloudevents+json"
BATCH_CONTENT_TYPE: Final = "application/cloudevents-batch+json"
RETRY_BASE: Final = 0.25
"""Seconds: the first retry waits up to this long, each next one up to twice as long."""
RETRY_CAP: Final = 300.0
"""Seconds: the most one retry waits (an eighth of a shorter ``max_retry_age``)."""
DOWN_AFTER: Final = 3
"""Consecutive failed requests after which the next success wakes every waiting retry."""
_BATCH_NAMESPACE: Final = uuid.UUID("5b0e3f64-3a56-4c5e-9a55-8f0f6a3c2d11")
_REASON_BODY_CHARS: Final = 200
"""Characters of a refusing receiver's answer kept in the reason (logs, dead letters)."""
MAX_ANSWER_BYTES: Final = 64 * 1024
"""Bytes of a receiver's answer read at most; past that the connection is closed."""
_SCRUB_WINDOW: Final = 4096
_SECRET_PREFIX: Final = "whsec_"
# Credentials a receiver may echo back: header-like "name: value" / "name=value"
# pairs, bearer tokens, webhook secrets and signatures.
_ECHOED_CREDENTIALS: Final = (
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 ***"),
    (re.compile(r"whsec_[A-Za-z0-9+/=]+"), "whsec_***"),
    (re.compile(r"\bv1[,=][A-Za-z0-9+/]{20,}={0,2}"), "v1,***"),
    (
        re.compile(
            r"(?i)\b(authorization|proxy-authorization|x-auth-token|x-security-token|cookie"
            r"|set-cookie|webhook-signature|api[-_]?key|access[-_]?key|secret[-_]?key|secret"
            r"|token|password|passwd|signature|sig)(\W{0,3}\s*[:=]\s*\W{0,2})[^\s,;&\"'}]+"
        ),
        r"\1\2***",
    ),
)


def scrub_answer(answer: bytes, secrets: Sequence[str] = ()) -> str:
    """A receiver's answer made fit for logs and dead letters: at most
    ``_REASON_BODY_CHARS`` characters of text, control characters as spaces,
    runs of whitespace as one, and every credential it may echo (the given
    ``secrets``, and anything shaped like an authorization value, a token, a
    webhook secret or signature) replaced by ``***``."""
    text = answer[:_SCRUB_WINDOW].decode("utf-8", "replace")
    for secret in sorted({value for value in secrets if len(value) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "***")
    for pattern, replacement in _ECHOED_CREDENTIALS:
        text = pattern.sub(replacement, text)
    text = "".join(char if char.isprintable() else " " for char in text)
    return bounded_text(" ".join(text.split()), _REASON_BODY_CHARS)


def signature(keys: Sequence[bytes], message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: one ``v1,<base64>`` per key, space-separated."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        for key in keys
    )


def batch_id(event_ids: Sequence[str]) -> str:
    """The ``webhook-id`` of a batch: the event id for one event, else a UUIDv5 of the ids."""
    if len(event_ids) == 1:
        return event_ids[0]
    return str(uuid.uuid5(_BATCH_NAMESPACE, ",".join(event_ids)))


def is_retryable(status: int) -> bool:
    """408, 429 and 5xx are worth another attempt; other non-2xx answers are final."""
    return status in (408, 429) or status >= 500


def parse_webhook_secret(value: str, key: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (``whsec_`` + base64)."""
    if not value.startswith(_SECRET_PREFIX):
        raise ConfigError(key, 'must be "whsec_" followed by base64')
    try:
        raw = base64.b64decode(value[len(_SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(key, 'must be "whsec_" followed by valid base64') from None
    if not raw:
        raise ConfigError(key, 'must have key material after "whsec_"')
    return raw


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookOptions:
    """A ``webhook`` sink's keys, validated; durations in seconds.

    ``secrets`` holds the inline secrets (``secret`` then ``secrets``),
    ``secret_files`` the absolute paths of secret files (``secret_file`` then
    ``secret_files``), read when the sink starts and on every reopen.
    """

    url: str
    secrets: tuple[Secret, ...] = ()
    secret_files: tuple[Path, ...] = ()
    timeout: float = 10.0
    """Seconds one request may take."""
    max_retry_age: float = 86400.0
    """Seconds after its transition an event is still retried; then it is dead-lettered."""
    concurrency: int = 8
    """Batches in flight at once (never two with events of one job)."""
    batch_max: int = 1
    """Events per request; above 1 the body is a JSON array."""

    @classmethod
    def parse(cls, table: Mapping[str, object], scope: OptionScope) -> WebhookOptions:
        """The options of a ``webhook`` sink table.

        Secret files are checked (readable, a valid secret) after the whole
        config is validated; the messages never quote a secret or the URL.
        """
        scope.check_keys(
            table,
            (
                "url",
                "secret",
                "secrets",
                "secret_file",
                "secret_files",
                "timeout",
                "max_retry_age",
                "concurrency",
                "batch_max",
            ),
        )
        defaults = field_defaults(cls)
        context = scope.context

        def inline(value: object, key: str) -> Secret:
            text = expect_str(value, key).strip()
            parse_webhook_secret(text, key)
            return Secret(text)

        def from_file(value: object, key: str) -> Path:
            path = context.path(value, key)

            def verify() -> None:
                secret = context.read_secret(path, key)
                if secret is not None:
                    parse_webhook_secret(secret, key)

            context.check(verify)
            return path

        def many(name: str) -> list[object]:
            if name not in table:
                return []
            value = table[name]
            if not isinstance(value, list | tuple):
                raise type_error(scope.key(name), "an array of strings", value)
            return list(value)

        secrets = [inline(table["secret"], scope.key("secret"))] if "secret" in table else []
        secrets += [
            inline(value, scope.key(f"secrets[{index}]"))
            for index, value in enumerate(many("secrets"))
        ]
        files = (
            [from_file(table["secret_file"], scope.key("secret_file"))]
            if "secret_file" in table
            else []
        )
        files += [
            from_file(value, scope.key(f"secret_files[{index}]"))
            for index, value in enumerate(many("secret_files"))
        ]
        timeout = parse_duration(table.get("timeout", defaults["timeout"]), scope.key("timeout"))
        if timeout <= 0:
            raise ConfigError(scope.key("timeout"), "must be greater than 0")
        return cls(
            url=expect_url(scope.required(table, "url"), scope.key("url"), endpoint=False),
            secrets=tuple(secrets),
            secret_files=tuple(files),
            timeout=timeout,
            max_retry_age=parse_duration(
                table.get("max_retry_age", defaults["max_retry_age"]), scope.key("max_retry_age")
            ),
            concurrency=expect_int(
                table.get("concurrency", defaults["concurrency"]), scope.key("concurrency"), 1, 1000
            ),
            batch_max=expect_int(
                table.get("batch_max", defaults["batch_max"]), scope.key("batch_max"), 1, 10_000
            ),
        )

    def render(self) -> dict[str, object]:
        """As written in TOML, with the URL's userinfo and query values and every
        inline secret masked (secret files by path)."""
        rendered: dict[str, object] = {"url": redact_url(self.url)}
        if self.secrets:
            rendered["secrets"] = [SECRET_MASK for _ in self.secrets]
        if self.secret_files:
            rendered["secret_files"] = [str(path) for path in self.secret_files]
        return rendered | {
            "timeout": toml_duration(self.timeout),
            "max_retry_age": toml_duration(self.max_retry_age),
            "concurrency": self.concurrency,
            "batch_max": self.batch_max,
        }


@dataclass(frozen=True, slots=True)
class Attempt:
    """The result of one request."""

    acknowledged: bool
    retryable: bool = False
    reason: str = ""
    status: int | None = None
    retry_after: float | None = None


class WebhookSink:
    """POSTs events to ``url``; see the module documentation."""

    parse_options = WebhookOptions.parse

    def __init__(self, config: SinkConfig, context: SinkContext) -> None:
        options = config.options
        if not isinstance(options, WebhookOptions):
            raise TypeError(f"webhook sink {config.name!r}: options must be WebhookOptions")
        self.name = config.name
        self.url = URL(options.url)
        self._inline_secrets = options.secrets
        self._secret_files = options.secret_files
        self.timeout = options.timeout
        self.max_retry_age = options.max_retry_age
        self.concurrency = options.concurrency
        self.batch_max = options.batch_max
        # One wait is at most an eighth of the window, so even a short window
        # gets several attempts before its events are dead-lettered.
        self.retry_cap = min(RETRY_CAP, max(1.0, self.max_retry_age / 8))
        self.dead_letters = DeadLetterStore(context.state_dir)
        # Never log the URL: its path or query may carry a token. The origin is safe.
        self.origin = f"{self.url.scheme}://{self.url.host}:{self.url.port}"
        self._proxy = proxy_for(self.url)
        self._keys: tuple[bytes, ...] = ()
        self._session: aiohttp.ClientSession | None = None
        self._hold_until = 0.0
        self._streak = 0
        self._recovered = asyncio.Event()
        self._rng = random.Random()
        self.requests = 0
        self.acknowledged = 0
        self.failed_attempts = 0
        self.dead_lettered = 0

    # -- lifecycle --------------------------------------------------------------------

    def _load_keys(self) -> tuple[bytes, ...]:
        prefix = f"sinks.{self.name}"
        keys = [
            parse_webhook_secret(secret, f"{prefix}.secrets[{index}]")
            for index, secret in enumerate(self._inline_secrets)
        ]
        for index, path in enumerate(self._secret_files):
            key = f"{prefix}.secret_files[{index}]"
            keys.append(parse_webhook_secret(read_secret(path, key), key))
        return tuple(keys)

    async def start(self) -> None:
        """Read the secrets and open the connection pool."""
        self._keys = await asyncio.to_thread(self._load_keys)
        # Room for the runner's requests and a redelivery's at once, so neither
        # waits for a pooled connection (that wait would count against the timeout).
        connector = aiohttp.TCPConnector(limit=2 * self.concurrency, keepalive_timeout=30.0)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"User-Agent": USER_AGENT},
            trust_env=False,  # the proxy is resolved once, in proxy_for
            raise_for_status=False,
        )

    async def reopen(self) -> None:
        """Re-read the secret files (rotation without a restart); keep the old keys on error."""
        try:
            self._keys = await asyncio.to_thread(self._load_keys)
        except ConfigError as exc:
            log.error("webhook.secret_reload_failed", sink=self.name, error=str(exc))

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def stats(self) -> dict[str, int]:
        """Counters for ``/readyz``."""
        return {
            "requests": self.requests,
            "acknowledged": self.acknowledged,
            "failed_attempts": self.failed_attempts,
            "dead_lettered": self.dead_lettered,
        }

    # -- delivery ---------------------------------------------------------------------

    async def deliver(self, batch: Sequence[Delivery]) -> None:
        """Deliver ``batch`` in order; return once each event is acknowledged or
        dead-lettered. Raises only when the dead-letter file cannot be written."""
        size = self.batch_max
        for start in range(0, len(batch), size):
            await self._deliver_group(batch[start : start + size])

    async def resend(self, batch: Sequence[Delivery]) -> str | None:
        """One attempt for a redelivery: None when acknowledged, else why not."""
        outcome = await self._attempt(batch)
        if outcome.acknowledged:
            self.acknowledged += len(batch)
            return None
        return outcome.reason

    async def _deliver_group(self, group: Sequence[Delivery]) -> None:
        started_wall = time.time()
        observed = [at for item in group if (at := _observed_at(item)) is not None]
        born = min([*observed, started_wall])
        attempt = 0
        while True:
            outcome = await self._attempt(group)
            attempt += 1
            if outcome.acknowledged:
                self.acknowledged += len(group)
                return
            if not outcome.retryable:
                await self._dead_letter(group, outcome, outcome.reason, attempt, started_wall)
                return
            if outcome.retry_after is not None:
                delay = max(outcome.retry_after, RETRY_BASE)  # "Retry-After: 0" must not spin
                self._hold_until = max(self._hold_until, time.monotonic() + delay)
            else:
                ceiling = min(self.retry_cap, RETRY_BASE * 2.0 ** min(attempt - 1, 32))
                delay = self._rng.uniform(0.0, ceiling)
            age = time.time() - born
            if age + delay > self.max_retry_age:
                reason = (
                    f"gave up after {attempt} attempts, {age:.1f}s after the transition"
                    f" (max_retry_age {self.max_retry_age:g}s): {outcome.reason}"
                )
                await self._dead_letter(group, outcome, reason, attempt, started_wall)
                return
            log.warning(
                "webhook.retry",
                sink=self.name,
                endpoint=self.origin,
                event_id=group[0].event.event_id,
                events=len(group),
                attempt=attempt,
                status=outcome.status,
                reason=outcome.reason,
                retry_in=round(delay, 3),
            )
            await self._pause(delay, strict=outcome.retry_after is not None)

    async def _pause(self, delay: float, *, strict: bool) -> None:
        """Wait ``delay``; a backoff (not a ``Retry-After``) ends early when the
        endpoint answers again after a run of failures, so an outage's backlog
        goes out at once instead of after each batch's own backoff."""
        if strict:
            await asyncio.sleep(delay)
            return
        recovered = self._recovered
        try:
            async with asyncio.timeout(delay):
                await recovered.wait()
        except TimeoutError:
            pass

    async def _held(self) -> None:
        """Wait out a ``Retry-After`` (it may be extended while waiting)."""
        while True:
            wait = self._hold_until - time.monotonic()
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    def _encode(self, group: Sequence[Delivery]) -> tuple[str, bytes, str]:
        if self.batch_max > 1:
            ids = [item.event.event_id for item in group]
            body = b"[" + b",".join(item.event.payload for item in group) + b"]"
            return batch_id(ids), body, BATCH_CONTENT_TYPE
        (item,) = group
        return item.event.event_id, item.event.payload, CONTENT_TYPE

    async def _attempt(self, group: Sequence[Delivery]) -> Attempt:
        session = self._session
        if session is None:
            raise RuntimeError("webhook sink is not started")
        message_id, body, content_type = self._encode(group)
        await self._held()
        timestamp = int(time.time())
        headers = {
            "Content-Type": content_type,
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
        }
        if self._keys:
            headers["webhook-signature"] = signature(self._keys, message_id, timestamp, body)
        self.requests += 1
        try:
            async with session.post(
                self.url, data=body, headers=headers, allow_redirects=False, proxy=self._proxy
            ) as response:
                status = response.status
                location = response.headers.get("Location")
                # Read to the end so the connection is reused, but never more than
                # MAX_ANSWER_BYTES (then the connection is closed instead).
                answer = await read_bounded(response, MAX_ANSWER_BYTES) or b""
                retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            outcome = Attempt(False, retryable=True, reason=self._describe(exc))
        else:
            if 200 <= status < 300:
                self._on_success()
                return Attempt(True, status=status)
            if 300 <= status < 400:
                # Not followed (the events would go elsewhere, maybe over plain
                # HTTP) and not retried: only a change of the sink's url helps.
                reason = (
                    f"HTTP {status} redirect to {location_origin(location)} not followed"
                    " (set the sink's url to the new address, then redeliver)"
                )
            else:
                snippet = scrub_answer(answer, self._echo_secrets(headers))
                reason = f"HTTP {status}" + (f": {snippet}" if snippet else "")
            outcome = Attempt(
                False,
                retryable=is_retryable(status),
                reason=reason,
                status=status,
                retry_after=retry_after if is_retryable(status) else None,
            )
        self.failed_attempts += 1
        self._streak += 1
        return outcome

    def _on_success(self) -> None:
        # Only after a run of failures: one event the receiver keeps refusing
        # among others it takes must not be retried on every other success.
        if self._streak >= DOWN_AFTER:
            self._recovered.set()
            self._recovered = asyncio.Event()
        self._streak = 0

    def _echo_secrets(self, headers: dict[str, str]) -> list[str]:
        """What the receiver must not be able to echo into our logs: the
        signatures just sent, the keys, and the url's path, query and password."""
        values = list(headers.get("webhook-signature", "").split())
        values += [value.removeprefix("v1,") for value in values]
        for key in self._keys:
            values.append(base64.b64encode(key).decode())
            values.append(key.decode("utf-8", "replace"))
        values += [self.url.raw_path_qs, self.url.password or ""]
        return [value for value in values if value not in ("", "/")]

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        for secret in {str(self.url), self.url.raw_path_qs, self.url.password or ""} - {"", "/"}:
            text = text.replace(secret, "***")
        return text

    async def _dead_letter(
        self,
        group: Sequence[Delivery],
        outcome: Attempt,
        reason: str,
        attempts: int,
        first_attempt_at: float,
    ) -> None:
        entries = [
            DeadLetter.of(
                self.name,
                item,
                reason=reason,
                status=outcome.status,
                attempts=attempts,
                first_attempt_at=first_attempt_at,
            )
            for item in group
        ]
        path = await asyncio.to_thread(self.dead_letters.append, self.name, entries)
        self.dead_lettered += len(entries)
        for entry in entries:
            log.error(
                "webhook.dead_lettered",
                sink=self.name,
                endpoint=self.origin,
                event_id=entry.event_id,
                job_id=entry.job_id,
                status=entry.status,
                attempts=attempts,
                reason=reason,
                file=str(path),
            )


def _observed_at(item: Delivery) -> float | None:
    """Unix time of the event's CloudEvent ``time`` (None when absent or invalid)."""
    value = item.cloud_event.get("time")
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None
