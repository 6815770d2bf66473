"""Host liveness through a real etcd: leases, the watch, agent deaths and etcd outages.

Times printed here are measured, not assumed; run with -s to see them.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid

import aetcd
import pytest

from deploy.local.mesh import ROOT, free_port
from services.common.etcd_client import parse_endpoints
from services.common.liveness import HostLease, HostLiveness

TTL = 2

# A host agent reduced to its liveness: registers, says so, then lives until killed.
AGENT = """
import asyncio, sys
from services.common.liveness import HostLease

async def main():
    endpoints, prefix, host = sys.argv[1:4]
    lease = HostLease(endpoints, prefix, host, {"host": host}, ttl=int(sys.argv[4]))
    if not await lease.start():
        sys.exit("etcd unreachable")
    print("registered", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture
def prefix() -> str:
    return f"/test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def liveness(etcd_server, prefix):
    watcher = HostLiveness(etcd_server.endpoint, prefix)
    assert await watcher.start()
    yield watcher
    await watcher.stop()


@pytest.fixture
async def etcd(etcd_server):
    """A plain aetcd client, to look at etcd or tamper with it behind the library's back."""
    host, port = parse_endpoints(etcd_server.endpoint)[0]
    async with aetcd.Client(host, port, timeout=5) as client:
        yield client


async def until(liveness: HostLiveness, predicate, within: float) -> float:
    """Seconds until `predicate()` held, as the watch reported it."""
    started = time.monotonic()
    async with asyncio.timeout(within):
        await liveness.wait_for(predicate)
    return time.monotonic() - started


@pytest.fixture
async def lease(etcd_server, prefix):
    """Makes host leases (ttl TTL) and stops whichever a failed test left running."""
    made: list[HostLease] = []

    def make(host: str) -> HostLease:
        value = {"host": host, "address": "127.0.0.1:1", "driver": "fake"}
        made.append(HostLease(etcd_server.endpoint, prefix, host, value, ttl=TTL))
        return made[-1]

    yield make
    for host_lease in made:
        await host_lease.stop()


async def test_a_registered_host_appears_through_the_watch(liveness, lease):
    host = lease("h1")
    started = time.monotonic()
    assert await host.start()
    seen = await until(liveness, lambda: liveness.is_alive("h1"), within=2)
    print(f"\nregistration seen after {time.monotonic() - started:.3f}s")
    assert seen < 0.5
    assert liveness.alive() == {"h1": {"host": "h1", "address": "127.0.0.1:1", "driver": "fake"}}


async def test_a_killed_agent_vanishes_within_the_ttl_and_its_neighbour_stays(
    etcd_server, prefix, liveness, lease
):
    steady = lease("steady")
    assert await steady.start()
    agent = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", AGENT, etcd_server.endpoint, prefix, "doomed", str(TTL)),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(15):
            assert await agent.stdout.readline() == b"registered\n"
        await until(liveness, lambda: liveness.is_alive("doomed"), within=2)
        agent.kill()  # SIGKILL: no chance to revoke its lease
        detected = await until(liveness, lambda: not liveness.is_alive("doomed"), within=TTL + 3)
    finally:
        if agent.returncode is None:
            agent.kill()
        await agent.wait()
    print(f"\nSIGKILLed agent (ttl {TTL}s) detected dead after {detected:.2f}s")
    assert detected <= TTL + 1.0
    # The neighbour kept refreshing through it all, and keeps going past another TTL.
    await asyncio.sleep(TTL)
    assert liveness.is_alive("steady") and steady.registered


async def test_a_graceful_stop_removes_the_key_at_once(liveness, etcd, lease):
    host = lease("h1")
    assert await host.start()
    await until(liveness, lambda: liveness.is_alive("h1"), within=2)
    await host.stop()
    gone = await until(liveness, lambda: not liveness.is_alive("h1"), within=1)
    print(f"\ngraceful stop seen after {gone:.3f}s")
    assert gone < 0.5
    assert not host.registered
    assert await etcd.get(host.key.encode()) is None


async def test_an_etcd_outage_longer_than_the_ttl_heals_by_itself(
    etcd_server, liveness, caplog, lease
):
    caplog.set_level(logging.INFO)
    host = lease("h1")
    assert await host.start()
    await until(liveness, lambda: liveness.is_alive("h1"), within=2)

    await asyncio.to_thread(etcd_server.stop)
    await until(liveness, lambda: not liveness.connected, within=2)
    await asyncio.sleep(TTL + 1)
    # Nobody is declared dead because etcd is away.
    assert liveness.alive().keys() == {"h1"}
    assert not liveness.connected
    assert not host.registered

    restarted = time.monotonic()
    await asyncio.to_thread(etcd_server.start)
    healthy = time.monotonic() - restarted
    async with asyncio.timeout(2 * TTL):
        await host.wait_registered()
    registered = time.monotonic() - restarted
    await until(liveness, lambda: liveness.connected and liveness.is_alive("h1"), within=4)
    watching = time.monotonic() - restarted
    print(
        f"\netcd healthy {healthy:.2f}s after restart; lease registered at {registered:.2f}s; "
        f"watch back at {watching:.2f}s"
    )
    # The lease is really kept alive again, not only restored by etcd for one TTL.
    await asyncio.sleep(TTL + 0.5)
    assert liveness.is_alive("h1") and host.registered
    outage_warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "unreachable" in r.message
    ]
    # One warning per loop (the lease's and the watch's) for the whole outage, no flood.
    assert len(outage_warnings) == 2, [r.message for r in outage_warnings]


async def test_an_expired_lease_is_granted_again_and_the_key_put_back(liveness, etcd, lease):
    # What etcd does to an agent cut off from it for longer than the TTL: it
    # expires the lease and deletes the key; revoking it stands in for that.
    host = lease("h1")
    assert await host.start()
    await until(liveness, lambda: liveness.is_alive("h1"), within=2)
    old_lease = (await etcd.get(host.key.encode())).lease
    await etcd.revoke_lease(old_lease)
    await until(liveness, lambda: not liveness.is_alive("h1"), within=1)
    back = await until(liveness, lambda: liveness.is_alive("h1"), within=2 * TTL)
    print(f"\nexpired lease re-registered after {back:.2f}s")
    assert back <= TTL / 3 + 0.5
    assert (await etcd.get(host.key.encode())).lease != old_lease


async def test_an_agent_starts_while_etcd_is_down_and_registers_later(etcd_server, prefix, lease):
    await asyncio.to_thread(etcd_server.stop)
    host = lease("h1")
    watcher = HostLiveness(etcd_server.endpoint, prefix)
    try:
        async with asyncio.timeout(3):
            assert not await host.start()
            assert not await watcher.start()
        await asyncio.to_thread(etcd_server.start)
        async with asyncio.timeout(2 * TTL):
            await host.wait_registered()
        await until(watcher, lambda: watcher.is_alive("h1"), within=4)
    finally:
        await watcher.stop()


class FirstListingIsStale(HostLiveness):
    """Lists once at a revision etcd has compacted away, as a re-watch after a
    long outage can."""

    stale_revision: int = 0

    async def _list(self, client):
        hosts, revision = await super()._list(client)
        if self.stale_revision:
            revision, self.stale_revision = self.stale_revision, 0
        return hosts, revision


async def test_a_watch_behind_a_compaction_lists_again(etcd_server, prefix, etcd, caplog, lease):
    caplog.set_level(logging.INFO)
    old = (await etcd.put(f"{prefix}/other".encode(), b"0")).header.revision
    latest = (await etcd.put(f"{prefix}/other".encode(), b"1")).header.revision
    await etcd.compact(latest)
    watcher = FirstListingIsStale(etcd_server.endpoint, prefix)
    watcher.stale_revision = old - 1
    host = lease("h1")
    try:
        await watcher.start()
        assert await host.start()
        await until(watcher, lambda: watcher.connected and watcher.is_alive("h1"), within=3)
        assert any("compaction" in r.message for r in caplog.records)
    finally:
        await watcher.stop()


async def test_an_unreachable_endpoint_is_skipped_for_the_next_one(etcd_server, prefix):
    endpoints = f"127.0.0.1:{free_port()},{etcd_server.endpoint}"
    host = HostLease(endpoints, prefix, "h1", {}, ttl=TTL)
    watcher = HostLiveness(endpoints, prefix)
    try:
        await host.start()
        await watcher.start()
        await until(watcher, lambda: watcher.is_alive("h1"), within=3)
    finally:
        await host.stop()
        await watcher.stop()


async def test_hosts_by_provider_follow_deaths_returns_and_new_values(liveness, etcd, prefix):
    """The scheduler looks candidates up in this view: kept by the watch, not rebuilt."""
    key = f"{prefix.rstrip('/')}/hosts/h1".encode()
    view = liveness.by_provider()
    await etcd.put(key, b'{"host": "h1", "provider_uuid": "rp-1"}')
    await until(liveness, lambda: "rp-1" in view, within=2)
    assert view["rp-1"]["host"] == "h1" and liveness.value_of("h1") == view["rp-1"]
    await etcd.delete(key)
    await until(liveness, lambda: not liveness.is_alive("h1"), within=2)
    assert "rp-1" not in view and liveness.value_of("h1") is None
    # Back with another provider (its agent's state was wiped): only the new uuid maps.
    await etcd.put(key, b'{"host": "h1", "provider_uuid": "rp-2"}')
    await until(liveness, lambda: "rp-2" in view, within=2)
    assert set(view) == {"rp-2"}
    await etcd.put(key, b'{"host": "h1", "provider_uuid": "rp-3"}')
    await until(liveness, lambda: "rp-3" in view, within=2)
    assert set(view) == {"rp-3"}
