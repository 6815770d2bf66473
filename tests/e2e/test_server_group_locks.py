"""The server-group lock through a real etcd: one holder at a time across replicas,
freed within its TTL when the holder dies, and one lease per replica, not per decision.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid

import pytest

from deploy.local.mesh import ROOT
from services.common.etcd_client import EtcdConnection
from services.scheduler.group_locks import GroupLocks

TTL = 3

HOLDER = """
import asyncio, sys
from services.common.etcd_client import EtcdConnection
from services.scheduler.group_locks import GroupLocks

async def main():
    locks = GroupLocks(EtcdConnection(sys.argv[1], purpose="test"), ttl_s=int(sys.argv[3]))
    assert await locks.acquire(sys.argv[2].encode(), timeout_s=5)
    print("holding", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture
def key() -> bytes:
    return f"/test-{uuid.uuid4().hex[:8]}/locks/server_groups/g".encode()


def replica(etcd_server) -> GroupLocks:
    return GroupLocks(EtcdConnection(etcd_server.endpoint, purpose="test"), ttl_s=TTL)


async def test_two_replicas_never_hold_a_group_at_once(etcd_server, key):
    replicas = [replica(etcd_server), replica(etcd_server)]
    holders: list[int] = []
    overlaps = 0

    async def decide(locks: GroupLocks, who: int) -> None:
        nonlocal overlaps
        for _ in range(10):
            held = await locks.acquire(key, timeout_s=10)
            assert held is not None
            holders.append(who)
            overlaps += len(holders) > 1
            await asyncio.sleep(0.005)
            holders.remove(who)
            await locks.release(held)

    # Two decisions per replica at once: they contend in the process and in etcd.
    await asyncio.gather(*(decide(replicas[i % 2], i) for i in range(4)))
    assert overlaps == 0


async def test_a_held_lock_makes_others_wait_then_passes_on(etcd_server, key):
    a, b = replica(etcd_server), replica(etcd_server)
    held = await a.acquire(key, timeout_s=1)
    assert held is not None
    started = time.monotonic()
    assert await b.acquire(key, timeout_s=1) is None
    assert time.monotonic() - started >= 1
    waiting = asyncio.create_task(b.acquire(key, timeout_s=5))
    await asyncio.sleep(0.2)
    await a.release(held)
    async with asyncio.timeout(1):
        assert await waiting is not None


async def test_decisions_of_one_replica_wait_for_each_other(etcd_server, key):
    locks = replica(etcd_server)
    held = await locks.acquire(key, timeout_s=1)
    assert held is not None
    assert await locks.acquire(key, timeout_s=0.3) is None  # gave up waiting in the process
    waiting = asyncio.create_task(locks.acquire(key, timeout_s=5))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await locks.release(held)
    async with asyncio.timeout(1):
        again = await waiting
    assert again is not None
    await locks.release(again)
    assert await locks.acquire(key, timeout_s=0.3) is not None


async def test_a_dead_holder_frees_the_lock_within_the_ttl(etcd_server, key):
    doomed = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        etcd_server.endpoint,
        key.decode(),
        str(TTL),
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    heir = replica(etcd_server)
    try:
        async with asyncio.timeout(10):
            assert (await doomed.stdout.readline()).strip() == b"holding"
        assert await heir.acquire(key, timeout_s=0.5) is None
        doomed.kill()
        await doomed.wait()
        started = time.monotonic()
        assert await heir.acquire(key, timeout_s=TTL + 2) is not None
        took = time.monotonic() - started
        print(f"\nholder SIGKILLed: lock free after {took:.2f}s (TTL {TTL}s)")
        assert took <= TTL + 1
    finally:
        if doomed.returncode is None:
            doomed.kill()
            await doomed.wait()


async def test_decisions_share_one_lease(etcd_server, key):
    locks = replica(etcd_server)
    client = EtcdConnection(etcd_server.endpoint, purpose="test").client()
    leases = set()
    for i in range(20):
        held = await locks.acquire(key + str(i).encode(), timeout_s=1)
        assert held is not None
        leases.add((await client.get(held.key)).lease)
        await locks.release(held)
    assert len(leases) == 1
