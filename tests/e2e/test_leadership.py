"""Leadership through a real etcd: one leader, a fast hand-over, and a dead leader replaced.

Times printed here are measured; run with -s to see them.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid

import pytest

from deploy.local.mesh import ROOT
from services.common.leadership import Leadership

TTL = 2

CANDIDATE = """
import asyncio, sys
from services.common.leadership import Leadership

async def main():
    leadership = Leadership(sys.argv[1], sys.argv[2], "test", "doomed", ttl=int(sys.argv[3]))
    await leadership.start()
    await leadership.wait_leading()
    print("leading", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture
def prefix() -> str:
    return f"/test-{uuid.uuid4().hex[:8]}"


async def leading(*candidates: Leadership, within: float) -> Leadership:
    async with asyncio.timeout(within):
        while True:
            leaders = [c for c in candidates if c.is_leader]
            if leaders:
                assert len(leaders) == 1, "two leaders at once"
                return leaders[0]
            await asyncio.sleep(0.02)


async def test_one_of_two_leads_and_a_stop_hands_over_at_once(etcd_server, prefix):
    a = Leadership(etcd_server.endpoint, prefix, "test", "a", ttl=TTL)
    b = Leadership(etcd_server.endpoint, prefix, "test", "b", ttl=TTL)
    await a.start()
    await b.start()
    try:
        first = await leading(a, b, within=3)
        assert await first.leader() == first.identity
        other = b if first is a else a
        await asyncio.sleep(TTL)  # a few refreshes: still one leader
        assert first.is_leader and not other.is_leader

        started = time.monotonic()
        await first.stop()
        await leading(other, within=1.5)
        print(f"\nhand-over after a graceful stop: {time.monotonic() - started:.2f}s")
    finally:
        await a.stop()
        await b.stop()


async def test_a_killed_leader_is_replaced_within_the_ttl(etcd_server, prefix):
    doomed = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CANDIDATE,
        etcd_server.endpoint,
        prefix,
        str(TTL),
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    heir = Leadership(etcd_server.endpoint, prefix, "test", "heir", ttl=TTL)
    try:
        async with asyncio.timeout(10):
            assert (await doomed.stdout.readline()).strip() == b"leading"
        await heir.start()
        await asyncio.sleep(0.5)
        assert not heir.is_leader
        doomed.kill()
        await doomed.wait()
        started = time.monotonic()
        await leading(heir, within=TTL + 1.5)
        took = time.monotonic() - started
        print(f"\nleader SIGKILLed: replaced after {took:.2f}s (TTL {TTL}s)")
        assert took <= TTL + 1
    finally:
        if doomed.returncode is None:
            doomed.kill()
            await doomed.wait()
        await heir.stop()
