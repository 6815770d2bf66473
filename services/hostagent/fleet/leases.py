"""Liveness keys of many simulated hosts: a lease each, renewed over one stream.

A real agent (services.common.liveness.HostLease) runs a task per host and
opens a LeaseKeepAlive stream per refresh; ten thousand of those in one
process would be ten thousand tasks and three thousand new streams a second.
Here every host still has its own lease and its own key (same key, same JSON
value as a real agent, so watchers cannot tell the difference), but one
process renews all of its leases over one LeaseKeepAlive stream
(keepalive_stream.py: many keepalives per HTTP/2 frame), spread evenly over
the renewal interval so etcd sees a steady rate rather than a burst every
interval.

A lease etcd no longer knows (its keepalive reply has TTL 0: an outage
outlasted it) is granted anew and its key put again, as HostLease does. A
crashed host's lease is simply no longer renewed, so etcd expires it, exactly
as when a machine dies; `stop()` revokes the others, so their keys go at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import aetcd
import grpc

from services.common.etcd_client import ETCD_ERRORS, EtcdConnection
from services.common.liveness import hosts_prefix
from services.hostagent.fleet.keepalive_stream import KeepAliveStream

log = logging.getLogger(__name__)

# Renewals are sent in slices this long: small enough that etcd sees a steady
# rate, large enough that each slice is worth a wakeup (one DATA frame).
SLICE_S = 0.25
# Concurrent grant+put (and revoke) calls: enough to keep etcd busy from one
# process without queueing thousands of calls on one connection.
REGISTER_CONCURRENCY = 64


@dataclass
class _Host:
    key: bytes
    value: bytes
    lease_id: int = 0  # 0: not granted yet, or granted again after it lapsed


class HostLeases:
    """The liveness keys of many hosts, kept by one background task until `stop()`."""

    def __init__(
        self, endpoints: str, prefix: str, ttl: int, renew_interval_s: float | None = None
    ) -> None:
        if ttl < 2:  # etcd rounds shorter leases up to its own minimum
            raise ValueError(f"liveness ttl must be at least 2 s, got {ttl}")
        self.ttl = ttl
        # A renewal every TTL/3 survives two lost or late renewals, as HostLease does.
        self.renew_interval_s = renew_interval_s or ttl / 3
        if self.renew_interval_s >= ttl:
            raise ValueError("the renewal interval must be shorter than the ttl")
        self._prefix = hosts_prefix(prefix)
        self._conn = EtcdConnection(
            endpoints,
            purpose="liveness of simulated hosts",
            call_timeout=max(1.0, self.renew_interval_s),
            max_backoff=self.renew_interval_s,
        )
        self._hosts: dict[str, _Host] = {}
        self._by_lease: dict[int, str] = {}
        self._unregistered = asyncio.Event()
        self._task: asyncio.Task | None = None
        # Counters, for the liveness benchmark's etcd load figures.
        self.keepalives_sent = 0

    def add(self, host: str, value: dict[str, Any]) -> None:
        self._hosts[host] = _Host((self._prefix + host).encode(), json.dumps(value).encode())
        self._unregistered.set()

    @property
    def registered(self) -> int:
        """Hosts whose key etcd confirmed (and whose lease has not been seen to lapse)."""
        return len(self._by_lease)

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_alive(), name="host-leases")

    def crash(self, hosts: list[str]) -> int:
        """Stop renewing these hosts' leases without revoking them; etcd deletes their
        keys when the TTL runs out. Returns how many were alive here."""
        crashed = 0
        for host in hosts:
            entry = self._hosts.pop(host, None)
            if entry is not None:
                self._by_lease.pop(entry.lease_id, None)
                crashed += 1
        return crashed

    async def stop(self) -> None:
        """Revoke every lease held, so the keys (and the hosts' liveness) vanish at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        leases = list(self._by_lease)
        self._by_lease.clear()
        try:
            await _bounded(self._revoke, leases)
            log.info("revoked the leases of %d host(s)", len(leases))
        except ETCD_ERRORS as exc:
            msg = "could not revoke the leases of %d host(s) (%s); their keys expire within %d s"
            log.warning(msg, len(leases), exc, self.ttl)
        await self._conn.close()

    async def _revoke(self, lease_id: int) -> None:
        await self._conn.client().revoke_lease(lease_id)

    async def _keep_alive(self) -> None:
        async def on_failure() -> None:
            # Every lease is renewed again on the new stream; those that lapsed
            # meanwhile answer TTL 0 and are registered again.
            pass

        await self._conn.retry_forever(self._session, on_failure)

    async def _session(self) -> None:
        """The stream's life: register who is missing, renew everyone, until it breaks."""
        client = self._conn.client()
        await client.connect()
        self._unregistered.set()  # a registration the last stream's end cut short
        host, port = self._conn.endpoint
        async with asyncio.timeout(max(1.0, self.renew_interval_s)):
            stream = await KeepAliveStream.open(host, port, self._on_reply)
        tasks = [
            asyncio.create_task(self._register_missing(client), name="lease-grants"),
            asyncio.create_task(self._renew_forever(stream), name="lease-renewals"),
        ]
        try:
            # Either ending means the stream broke (or etcd failed a grant).
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        except grpc.aio.AioRpcError as exc:
            raise aetcd.ConnectionFailedError(f"{exc.code().name}: {exc.details()}") from exc
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            stream.close()
        raise aetcd.ConnectionFailedError("lease keepalive stream ended")

    async def _renew_forever(self, stream: KeepAliveStream) -> None:
        """Renew every registered lease each interval, a slice at a time, forever."""
        slices = max(1, round(self.renew_interval_s / SLICE_S))
        while True:
            started = time.monotonic()
            leases = list(self._by_lease)
            for i in range(slices):
                batch = leases[i * len(leases) // slices : (i + 1) * len(leases) // slices]
                batch = [lease_id for lease_id in batch if lease_id in self._by_lease]
                await stream.send(batch)  # those crashed meanwhile are left out
                self.keepalives_sent += len(batch)
                # Against the round's start, so slow writes do not stretch the interval.
                next_slice = started + (i + 1) * self.renew_interval_s / slices
                await asyncio.sleep(max(0.0, next_slice - time.monotonic()))
            outage = self._conn.recovered()
            if outage is not None:
                log.info("etcd back after %.1f s; renewing %d leases", outage, self.registered)

    def _on_reply(self, lease_id: int, ttl: int) -> None:
        if ttl > 0:
            return
        host = self._by_lease.pop(lease_id, None)
        if host is not None and host in self._hosts:
            log.warning("lease of host %s expired; registering it again", host)
            self._hosts[host].lease_id = 0
            self._unregistered.set()

    async def _register_missing(self, client: aetcd.Client) -> None:
        while True:
            await self._unregistered.wait()
            self._unregistered.clear()
            missing = [h for h, entry in self._hosts.items() if not entry.lease_id]
            started = time.monotonic()
            await _bounded(lambda host: self._register(client, host), missing)
            if missing:
                log.info(
                    "registered %d host(s) in etcd in %.1f s (lease ttl %d s)",
                    len(missing),
                    time.monotonic() - started,
                    self.ttl,
                )

    async def _register(self, client: aetcd.Client, host: str) -> None:
        lease = await client.lease(self.ttl)
        entry = self._hosts.get(host)
        if entry is None:  # crashed while we waited: let the new lease lapse too
            return
        await client.put(entry.key, entry.value, lease=lease.id)
        # Marked only once the key is there, so a failed put is registered again.
        if host in self._hosts:
            entry.lease_id = lease.id
            self._by_lease[lease.id] = host


async def _bounded(call, items: list) -> None:
    """await call(item) for every item, REGISTER_CONCURRENCY at a time."""
    pending = iter(items)

    async def worker() -> None:
        for item in pending:
            await call(item)

    await asyncio.gather(*(worker() for _ in range(min(REGISTER_CONCURRENCY, len(items)))))
