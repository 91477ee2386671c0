"""SIGHUP: apply a changed config to a running daemon without dropping a job or
an event."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING

from jobwatchd.cloud.auth import Authenticator, authenticator_for
from jobwatchd.cloud.client import UpstreamClient
from jobwatchd.config import AccountConfig, Config, ConfigError, load_config
from jobwatchd.daemon.wiring import client_for, poll_settings, simulated
from jobwatchd.engine.delivery import SinkRunner
from jobwatchd.logs import configure_logging, get_logger
from jobwatchd.systemd import monotonic_usec

if TYPE_CHECKING:
    from jobwatchd.daemon.lifecycle import Daemon

log = get_logger("jobwatchd.daemon")


def _same_connection(old: AccountConfig, new: AccountConfig) -> bool:
    return (
        old.service_endpoints,
        old.request_timeout,
        old.ca_file,
        old.max_response_size,
        old.max_sub_jobs,
    ) == (
        new.service_endpoints,
        new.request_timeout,
        new.ca_file,
        new.max_response_size,
        new.max_sub_jobs,
    )


def _needs_new_credentials(old: AccountConfig | None, new: AccountConfig) -> bool:
    """Whether a reload must rebuild an account's credentials. Files are re-read
    (cheap); an IAM token is only fetched again when the IAM settings changed."""
    return old is None or new.auth != "iam-password" or old != new


class Reloader:
    """Applies a reloaded config to one :class:`Daemon`, one reload at a time."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._lock = asyncio.Lock()

    async def reload(self) -> bool:
        """SIGHUP: re-read the config and apply sinks, credentials and polling
        settings without dropping a job or an event. An invalid config is
        refused with a log line and the running one stays."""
        async with self._lock:
            self.daemon.notifier.send(RELOADING=1, MONOTONIC_USEC=monotonic_usec())
            try:
                applied = await self._reload()
            finally:
                self.daemon.notifier.send(READY=1, STATUS=self.daemon.health.status_line())
            self.daemon.metrics.reloads.labels("applied" if applied else "rejected").inc()
            return applied

    async def _reload(self) -> bool:
        source = self.daemon.config.source
        try:
            new = await asyncio.to_thread(load_config, source)
            if self.daemon.simulator_endpoint is not None:
                new = simulated(new, self.daemon.simulator_endpoint)
            # Build everything that can fail before changing anything.
            previous = {account.name: account for account in self.daemon.config.accounts}
            authenticators = {
                account.name: authenticator_for(account, index)
                for index, account in enumerate(new.accounts)
                if _needs_new_credentials(previous.get(account.name), account)
            }
            old_sinks = {sink.name: sink for sink in self.daemon.config.sinks}
            fresh = [
                sink
                for sink in new.sinks
                if sink.name not in old_sinks or old_sinks[sink.name] != sink
            ]
            replacements = self.daemon.create_runners(dataclasses.replace(new, sinks=tuple(fresh)))
        except ConfigError as exc:
            log.error("config.reload_rejected", error=str(exc), source=str(source))
            return False
        old = self.daemon.config
        self._apply_accounts(old, new, authenticators)
        await self._apply_sinks(old, new, replacements)
        assert self.daemon.tracker is not None
        assert self.daemon.pollers is not None
        self.daemon.tracker.settings = poll_settings(new)
        if new.polling.concurrency != self.daemon.pollers.concurrency:
            self.daemon.pollers.resize(new.polling.concurrency)
        if new.daemon.log_level != old.daemon.log_level:
            configure_logging(new.daemon.log_level)
        if new.api != old.api:
            log.warning("config.restart_needed", changed="api")
        if new.daemon.state_dir != old.daemon.state_dir:
            log.warning("config.restart_needed", changed="daemon.state_dir")
        self.daemon.config = new
        if self.daemon.api is not None:
            self.daemon.api.reconfigure(new)  # registrations see added or changed accounts
        self.daemon.reloads += 1
        log.info(
            "config.reloaded",
            source=str(source),
            accounts=[account.name for account in new.accounts],
            sinks=list(self.daemon.runners),
        )
        return True

    def _apply_accounts(
        self, old: Config, new: Config, authenticators: Mapping[str, Authenticator]
    ) -> None:
        previous = {account.name: account for account in old.accounts}
        for index, account in enumerate(new.accounts):
            self.daemon.scheduler.configure_account(account.name, account.rate_limits_by_service())
            current = previous.get(account.name)
            replaced = self.daemon.clients.get(account.name)
            auth = authenticators.get(account.name)
            if auth is None:  # unchanged IAM settings: keep the cached token
                assert replaced is not None
                auth = replaced.auth
            if current is not None and _same_connection(current, account):
                self.daemon.clients[account.name].auth = auth
                continue
            # The credentials were built (or kept) before anything changed.
            client = client_for(account, index, new.polling.concurrency, auth)
            self.daemon.clients[account.name] = client
            self.daemon.spawn(self._swap_client(client, replaced), "swap-client")
        for name in previous.keys() - {account.name for account in new.accounts}:
            log.warning("config.account_removed_kept", account=name)

    @staticmethod
    async def _swap_client(client: UpstreamClient, replaced: UpstreamClient | None) -> None:
        await client.start()
        if replaced is not None:
            # Polls in flight on the old session finish first.
            await asyncio.sleep(replaced.request_timeout)
            await replaced.close()

    async def _apply_sinks(
        self, old: Config, new: Config, replacements: Mapping[str, SinkRunner]
    ) -> None:
        wanted = {sink.name for sink in new.sinks}
        for name in list(self.daemon.runners):
            if name not in wanted or name in replacements:
                await self.daemon.stop_runner(name)
                if self.daemon.fleet is not None:
                    self.daemon.fleet.owned_sinks.discard(name)
        for runner in self.daemon.runners.values():
            await runner.sink.reopen()  # unchanged sinks: reopen files (logrotate)
        if self.daemon.fleet is not None:
            # The fleet starts changed sinks where their lease is.
            for runner in replacements.values():
                await runner.sink.close()
            return
        for runner in replacements.values():
            await self.daemon.start_runner(runner)
