"""The simulator's leases (one keepalive stream for many hosts) against a real etcd:
each host has its own lease and key, lapsed leases are granted again, an etcd
restart loses nobody, crashed hosts expire and stop() revokes the rest."""

from __future__ import annotations

import asyncio
import time
import uuid

import aetcd

from services.common.etcd_client import parse_endpoints
from services.common.liveness import HostLiveness
from services.hostagent.fleet.leases import HostLeases
from tests.etcd_server import EtcdServer

HOSTS = [f"h{i}" for i in range(20)]
TTL_S = 2


def client_of(endpoint: str) -> aetcd.Client:
    host, port = parse_endpoints(endpoint)[0]
    return aetcd.Client(host, port)


async def started(etcd_server, prefix: str) -> tuple[HostLeases, HostLiveness]:
    leases = HostLeases(etcd_server.endpoint, prefix, TTL_S)
    for host in HOSTS:
        leases.add(host, {"host": host, "address": "127.0.0.1:1"})
    leases.start()
    liveness = HostLiveness(etcd_server.endpoint, prefix)
    await liveness.start()
    async with asyncio.timeout(10):
        await liveness.wait_for(lambda: set(liveness.alive()) == set(HOSTS))
    return leases, liveness


def test_each_host_has_its_own_lease_and_keeps_it_beyond_the_ttl(etcd_server):
    prefix = f"/t-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        leases, liveness = await started(etcd_server, prefix)
        try:
            async with client_of(etcd_server.endpoint) as client:
                keys = await client.get_prefix(f"{prefix}/hosts/".encode())
                assert len({kv.lease for kv in keys}) == len(HOSTS)
            await asyncio.sleep(TTL_S * 2)
            assert set(liveness.alive()) == set(HOSTS)
            assert leases.keepalives_sent >= len(HOSTS) * 3
        finally:
            await leases.stop()
            await liveness.stop()

    asyncio.run(scenario())


def test_a_lapsed_lease_is_granted_again_and_its_key_put_back(etcd_server):
    prefix = f"/t-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        leases, liveness = await started(etcd_server, prefix)
        try:
            async with client_of(etcd_server.endpoint) as client:
                key = await client.get(f"{prefix}/hosts/h3".encode())
                # What an outage longer than the TTL does to one lease.
                await client.revoke_lease(key.lease)
            async with asyncio.timeout(5):
                await liveness.wait_for(lambda: not liveness.is_alive("h3"))
                await liveness.wait_for(lambda: liveness.is_alive("h3"))
        finally:
            await leases.stop()
            await liveness.stop()

    asyncio.run(scenario())


def test_hosts_stay_alive_across_an_etcd_restart(etcd_server):
    prefix = f"/t-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        leases, liveness = await started(etcd_server, prefix)
        await liveness.stop()
        try:
            await asyncio.to_thread(etcd_server.stop)
            await asyncio.sleep(1)
            await asyncio.to_thread(etcd_server.start)
            # etcd restores leases with a fresh TTL; the stream reconnects and renews them.
            await asyncio.sleep(TTL_S * 2)
            async with client_of(etcd_server.endpoint) as client:
                keys = await client.get_prefix(f"{prefix}/hosts/".encode())
            assert len(list(keys)) == len(HOSTS)
        finally:
            await leases.stop()

    asyncio.run(scenario())


def test_crashed_hosts_expire_and_stop_revokes_the_others_at_once(etcd_server):
    prefix = f"/t-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        leases, liveness = await started(etcd_server, prefix)
        try:
            crashed_at = time.monotonic()
            assert leases.crash(["h0", "h1", "unknown"]) == 2
            async with asyncio.timeout(TTL_S + 1):
                await liveness.wait_for(lambda: not {"h0", "h1"} & set(liveness.alive()))
            assert time.monotonic() - crashed_at <= TTL_S + 1
            assert len(liveness.alive()) == len(HOSTS) - 2
            stopped_at = time.monotonic()
            await leases.stop()
            async with asyncio.timeout(1):
                await liveness.wait_for(lambda: not liveness.alive())
            assert time.monotonic() - stopped_at < 1
        finally:
            await leases.stop()
            await liveness.stop()

    asyncio.run(scenario())


def test_hosts_register_once_an_unreachable_etcd_comes_up(tmp_path):
    server = EtcdServer(tmp_path / "data", tmp_path / "etcd.log")

    async def scenario() -> None:
        leases = HostLeases(server.endpoint, "/t", TTL_S)
        for host in HOSTS:
            leases.add(host, {"host": host})
        leases.start()
        try:
            await asyncio.sleep(1)
            assert leases.registered == 0
            await asyncio.to_thread(server.start)
            deadline = time.monotonic() + 10
            while leases.registered < len(HOSTS):
                assert time.monotonic() < deadline, f"{leases.registered} registered"
                await asyncio.sleep(0.1)
        finally:
            await leases.stop()

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
