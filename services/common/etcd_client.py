"""A resilient hold on an etcd cluster, for the loops that must outlive outages.

aetcd (our etcd client, see notes/stack.md) dials exactly one host:port and
never gives up a channel, so this module adds what a long-lived loop needs:
endpoints tried in turn, a fresh client after each failure, a capped backoff,
and one warning per outage instead of one per retry.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

import aetcd

# What an etcd call raises when the cluster is unreachable, slow or restarting.
# aetcd maps gRPC UNAVAILABLE to ConnectionFailedError and DEADLINE_EXCEEDED to
# ConnectionTimeoutError, but other codes (e.g. NOT_FOUND for a lease that
# expired between grant and put) arrive as a bare ClientError; its connect()
# raises the builtin TimeoutError when another task is mid-connect.
ETCD_ERRORS = (aetcd.ClientError, TimeoutError)

# Ping the server over quiet connections so that a hung etcd or a silent network
# partition breaks a watch within ~15 s rather than never (measured with a
# SIGSTOPped etcd). etcd refuses pings more often than every 5 s
# (--grpc-keepalive-min-time), hence 10 s. gRPC stops pinging after two pings
# without data unless told otherwise, and in grpcio 1.85 the ack deadline that
# applies is http2.ping_timeout_ms (default 60 s), not keepalive_timeout_ms alone.
# Channels to one address share a connection (gRPC's global subchannel pool), so
# a new client does not reset gRPC's reconnect backoff, which grows towards 2
# minutes: capped at 0.5 s, keys come back as soon as etcd does (measured ~0 s
# after /health instead of 0.2-1.3 s).
_CHANNEL_OPTIONS = {
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.http2.ping_timeout_ms": 5_000,
    "grpc.http2.max_pings_without_data": 0,
    "grpc.max_reconnect_backoff_ms": 500,
}

log = logging.getLogger(__name__)


def parse_endpoints(endpoints: str) -> list[tuple[str, int]]:
    """'host:port,host:port' (the `etcd_endpoints` setting) as (host, port) pairs."""
    parsed = []
    for item in endpoints.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"etcd endpoint {item!r} is not host:port")
        parsed.append((host, int(port)))
    if not parsed:
        raise ValueError("no etcd endpoint given")
    return parsed


def _raise_if_cancelled() -> None:
    """Raise CancelledError if this task was asked to stop.

    A cancellation that lands in a gRPC call may come out of aetcd as a
    ClientError, which a retry loop takes for an outage: the loop went on
    forever and the service's stop hung until it was killed (seen on
    shutdown, while etcd stopped at the same time)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Backoff:
    """Exponential delays with jitter, so many agents do not reconnect in step."""

    def __init__(self, initial: float = 0.1, maximum: float = 2.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self._next = self.initial


class EtcdConnection:
    """One aetcd client at a time over the cluster's endpoints, with outage bookkeeping.

    A loop takes `conn.client()` and does its work; on an ETCD_ERRORS exception
    `failed(exc)` closes the client, moves to the next endpoint and sleeps the
    backoff (`retry_forever` runs such a loop); after the work succeeds,
    `recovered()` resets the backoff and says how long the outage lasted.
    """

    def __init__(
        self,
        endpoints: str,
        *,
        purpose: str,
        call_timeout: float = 5.0,
        max_backoff: float = 2.0,
    ) -> None:
        self._endpoints = parse_endpoints(endpoints)
        self._purpose = purpose
        # Bounds every unary call and watch creation: without it a call to a hung
        # (not dead) etcd would wait forever.
        self._call_timeout = call_timeout
        self._backoff = Backoff(maximum=max_backoff)
        self._turn = 0
        self._client: aetcd.Client | None = None
        self._outage_since: float | None = None

    @property
    def endpoint(self) -> tuple[str, int]:
        """The (host, port) the current client dials; the next one after a failure."""
        return self._endpoints[self._turn % len(self._endpoints)]

    def client(self) -> aetcd.Client:
        """The current client; aetcd dials lazily, on its first call."""
        if self._client is None:
            host, port = self.endpoint
            self._client = aetcd.Client(
                host, port, timeout=self._call_timeout, options=_CHANNEL_OPTIONS
            )
        return self._client

    async def retry_forever(
        self, attempt: Callable[[], Awaitable[None]], on_failure: Callable[[], Awaitable[None]]
    ) -> None:
        """Run `attempt` again and again (it returns to be run again at once); after a
        failure await `on_failure()`, then `failed()`. Never returns: cancel it."""
        while True:
            _raise_if_cancelled()
            try:
                await attempt()
            except ETCD_ERRORS as exc:
                await on_failure()
                await self.failed(exc)
            except Exception:
                # A bug must not silently end a loop that liveness depends on:
                # log it and go round again, like an outage.
                log.exception("etcd loop for %s failed unexpectedly", self._purpose)
                await on_failure()
                await self.failed("unexpected error")

    async def failed(self, error: BaseException | str) -> None:
        """Drop the client, warn once per outage, and wait before the next try on
        the next endpoint (with a fresh client, so a wedged channel goes too)."""
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning("etcd unreachable for %s: %s; retrying", self._purpose, error)
        else:
            log.debug("etcd still unreachable for %s: %s", self._purpose, error)
        await self.close()
        self._turn += 1
        _raise_if_cancelled()
        await asyncio.sleep(self._backoff.next_delay())

    def recovered(self) -> float | None:
        """Mark success; returns the length of the outage that just ended, if any."""
        self._backoff.reset()
        if self._outage_since is None:
            return None
        lasted = time.monotonic() - self._outage_since
        self._outage_since = None
        return lasted

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            # Closing shuts the client's watch stream down first; bound it in case
            # the channel is wedged.
            await asyncio.wait_for(client.close(), self._call_timeout)
        except (*ETCD_ERRORS, OSError) as exc:
            log.debug("closing etcd client for %s: %s", self._purpose, exc)
