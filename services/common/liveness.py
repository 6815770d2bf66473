"""Host liveness in etcd: agents hold a leased key, everyone else watches the keys.

Each host agent keeps `<prefix>/hosts/<host>` (a JSON value such as its address
and provider uuid) bound to a lease of a short TTL and refreshes the lease every
TTL/3 (`HostLease`). When the agent dies the refreshes stop, etcd expires the
lease and deletes the key within the TTL. Scheduler and api_gateway keep the set
of live hosts from a watch on the prefix (`HostLiveness`), so they learn of a
death or an arrival as soon as etcd does, without polling. The watch also keeps
the hosts by provider uuid, so that a scheduling decision at 10,000 hosts
looks its candidates up instead of building that map each time.

Both outlive etcd outages on their own: the lease is refreshed, or granted
anew with the key put again if it expired meanwhile; the watch is re-listed and
re-established. An outage never declares a host dead: `HostLiveness` keeps the
last hosts it knew and says `connected is False` until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import aetcd

from services.common.etcd_client import ETCD_ERRORS, EtcdConnection

log = logging.getLogger(__name__)


def hosts_prefix(prefix: str) -> str:
    """Where the host keys live under the `etcd_prefix` setting, with a trailing slash
    so that a watch on it cannot match a sibling such as `<prefix>/hostsX`."""
    return f"{prefix.rstrip('/')}/hosts/"


class HostLease:
    """This host's liveness key, kept alive by a background task until `stop()`.

    `start()` never fails because of etcd: it returns after the first attempt
    (True if the key is registered, False if etcd was unreachable) and the task
    keeps trying with backoff, so an agent can start while etcd is briefly down.
    """

    def __init__(
        self, endpoints: str, prefix: str, host: str, value: dict[str, Any], ttl: int = 10
    ) -> None:
        # etcd rounds shorter leases up to its own minimum (~1.5 s election timeout).
        if ttl < 2:
            raise ValueError(f"liveness ttl must be at least 2 s, got {ttl}")
        self.host = host
        self.key = hosts_prefix(prefix) + host
        self.ttl = ttl
        self._value = json.dumps(value).encode()
        # A call or a retry delay longer than the refresh interval could let the
        # lease lapse while we wait, hence both are bounded by TTL/3.
        self._conn = EtcdConnection(
            endpoints,
            purpose=f"liveness of host {host}",
            call_timeout=max(1.0, ttl / 3),
            max_backoff=ttl / 3,
        )
        self._lease_id: int | None = None
        self._registered = asyncio.Event()
        self._first_attempt = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def registered(self) -> bool:
        """Whether etcd confirmed the lease on the last refresh; False during an outage,
        even though the key may still be there: we cannot know."""
        return self._registered.is_set()

    async def start(self) -> bool:
        self._task = asyncio.create_task(self._keep_alive(), name=f"host-lease-{self.host}")
        await self._first_attempt.wait()
        return self.registered

    async def wait_registered(self) -> None:
        """Wait until the key is registered; bound it with `asyncio.timeout`."""
        await self._registered.wait()

    async def stop(self) -> None:
        """Revoke the lease, so the key (and the host's liveness) vanishes at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._lease_id is not None:
            try:
                await self._conn.client().revoke_lease(self._lease_id)
                log.info("host %s deregistered from etcd", self.host)
            except ETCD_ERRORS as exc:
                msg = "could not revoke the lease of host %s (%s); its key expires within %d s"
                log.warning(msg, self.host, exc, self.ttl)
            self._lease_id = None
        self._registered.clear()
        await self._conn.close()

    async def _keep_alive(self) -> None:
        async def refresh_then_sleep() -> None:
            await self._refresh_or_register()
            self._first_attempt.set()
            await asyncio.sleep(self.ttl / 3)

        async def unregistered() -> None:
            self._registered.clear()
            self._first_attempt.set()

        await self._conn.retry_forever(refresh_then_sleep, unregistered)

    async def _refresh_or_register(self) -> None:
        client = self._conn.client()
        if self._lease_id is not None:
            # aetcd reports an unknown lease as a reply with TTL 0, not an error.
            reply = await client.refresh_lease(self._lease_id)
            if reply.TTL > 0:
                outage = self._conn.recovered()
                if outage is not None:
                    log.info("etcd back after %.1f s; host %s still registered", outage, self.host)
                self._registered.set()
                return
            msg = "lease of host %s expired (etcd unreachable longer than %d s?); registering again"
            log.warning(msg, self.host, self.ttl)
            self._registered.clear()
            self._lease_id = None
        lease = await client.lease(self.ttl)
        # Remembered before the put so that stop() revokes it even if the put is cut short.
        self._lease_id = lease.id
        await client.put(self.key.encode(), self._value, lease=lease.id)
        self._registered.set()
        outage = self._conn.recovered()
        again = "" if outage is None else f" after a {outage:.1f} s outage"
        log.info("host %s registered in etcd%s (lease ttl %d s)", self.host, again, self.ttl)


class HostLiveness:
    """The live hosts (name -> registered JSON value), from a watch on the hosts prefix.

    `start()` returns after the first attempt to list and watch (True if it
    succeeded); the background task reconnects with backoff after any failure.
    """

    def __init__(self, endpoints: str, prefix: str = "/stratus", call_timeout: float = 5.0) -> None:
        self._prefix = hosts_prefix(prefix)
        self._conn = EtcdConnection(endpoints, purpose="host liveness", call_timeout=call_timeout)
        self._hosts: dict[str, dict[str, Any]] = {}
        self._by_provider: dict[str, dict[str, Any]] = {}
        self._connected = False
        self._changed = asyncio.Condition()
        self._first_attempt = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def connected(self) -> bool:
        """False while etcd is unreachable; `alive()` is then the last known set."""
        return self._connected

    def alive(self) -> dict[str, dict[str, Any]]:
        """A copy: host name -> the JSON value its agent registered."""
        return dict(self._hosts)

    def is_alive(self, host: str) -> bool:
        return host in self._hosts

    def value_of(self, host: str) -> dict[str, Any] | None:
        """The JSON value a live host registered; None if it is not alive."""
        return self._hosts.get(host)

    def by_provider(self) -> Mapping[str, dict[str, Any]]:
        """Live hosts by the provider uuid they registered: a read-only view kept
        by the watch (no copy), so it follows deaths and arrivals as they come."""
        return MappingProxyType(self._by_provider)

    async def start(self) -> bool:
        self._task = asyncio.create_task(self._follow(), name="host-liveness")
        await self._first_attempt.wait()
        return self._connected

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._connected = False
        await self._conn.close()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds, re-checked on every change of the hosts or
        of `connected`; bound it with `asyncio.timeout`."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def _follow(self) -> None:
        async def disconnected() -> None:
            await self._set_connected(False)
            self._first_attempt.set()

        await self._conn.retry_forever(self._list_and_watch, disconnected)

    async def _list_and_watch(self) -> None:
        client = self._conn.client()
        hosts, revision = await self._list(client)
        # Watching from just after the listing's revision misses no event between them.
        watch = await client.watch_prefix(self._prefix.encode(), start_revision=revision + 1)
        await self._replace(hosts)
        outage = self._conn.recovered()
        if outage is not None:
            log.info("host liveness watch back after a %.1f s etcd outage", outage)
        self._first_attempt.set()
        try:
            async for event in watch:
                await self._apply(event)
        except aetcd.RevisionCompactedError as exc:
            # The revisions between our listing and the watch are gone; listing
            # again (on return) gives a fresh revision to watch from.
            log.info("host watch fell behind a compaction (%s); listing again", exc)
            return
        # The stream ends without an error only when its client is closed.
        raise aetcd.ConnectionFailedError("watch stream ended")

    async def _list(self, client: aetcd.Client) -> tuple[dict[str, dict[str, Any]], int]:
        listing = await client.get_prefix(self._prefix.encode())
        hosts = {self._host_of(kv.key): _parse(kv.key, kv.value) for kv in listing}
        return hosts, listing.header.revision

    async def _replace(self, hosts: dict[str, dict[str, Any]]) -> None:
        async with self._changed:
            appeared = sorted(hosts.keys() - self._hosts.keys())
            gone = sorted(self._hosts.keys() - hosts.keys())
            self._hosts = hosts
            self._by_provider.clear()
            for value in hosts.values():
                self._index(value)
            self._connected = True
            self._changed.notify_all()
        msg = "%d live hosts in etcd (appeared: %s; gone: %s)"
        log.info(msg, len(hosts), _names(appeared), _names(gone))

    async def _apply(self, event: aetcd.Event) -> None:
        host = self._host_of(event.kv.key)
        async with self._changed:
            held = self._hosts.pop(host, None)
            if held is not None:
                self._unindex(held)
            if event.kind == aetcd.EventKind.PUT:
                if held is None:
                    log.info("host %s is alive", host)
                value = _parse(event.kv.key, event.kv.value)
                self._hosts[host] = value
                self._index(value)
            elif held is not None:
                log.info("host %s is gone (agent stopped or its lease expired)", host)
            self._changed.notify_all()

    def _index(self, value: dict[str, Any]) -> None:
        provider = value.get("provider_uuid")
        if provider:
            self._by_provider[provider] = value

    def _unindex(self, value: dict[str, Any]) -> None:
        provider = value.get("provider_uuid")
        # Only if it is still this host's: another may have registered the uuid since.
        if provider and self._by_provider.get(provider) is value:
            del self._by_provider[provider]

    async def _set_connected(self, connected: bool) -> None:
        async with self._changed:
            self._connected = connected
            self._changed.notify_all()

    def _host_of(self, key: bytes) -> str:
        return key.decode()[len(self._prefix) :]


def _parse(key: bytes, raw: bytes) -> dict[str, Any]:
    # A malformed value still marks a live host: the lease, not the payload, is
    # the liveness signal.
    try:
        value = json.loads(raw)
    except ValueError:
        log.warning("host key %s holds invalid JSON; treating its value as empty", key.decode())
        return {}
    return value if isinstance(value, dict) else {}


def _names(hosts: list[str], shown: int = 10) -> str:
    # A first listing may hold thousands of hosts: name a few, count the rest.
    if not hosts:
        return "none"
    more = f" and {len(hosts) - shown} more" if len(hosts) > shown else ""
    return ", ".join(hosts[:shown]) + more
