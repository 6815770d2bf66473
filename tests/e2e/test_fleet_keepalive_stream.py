"""The simulator's hand-spoken LeaseKeepAlive stream (HTTP/2 via h2, many keepalives
per frame) against a real etcd, and what it does when etcd goes away or hangs."""

from __future__ import annotations

import asyncio
import socket

import aetcd
import pytest

from services.common.etcd_client import parse_endpoints
from services.hostagent.fleet import keepalive_stream
from services.hostagent.fleet.keepalive_stream import KeepAliveStream
from tests.etcd_server import EtcdServer


def test_a_batch_of_keepalives_renews_each_lease_and_names_the_unknown_ones(etcd_server):
    host, port = parse_endpoints(etcd_server.endpoint)[0]

    async def scenario() -> None:
        replies: dict[int, int] = {}
        answered = asyncio.Event()

        def on_reply(lease: int, ttl: int) -> None:
            replies[lease] = ttl
            if len(replies) == len(live) + 1:
                answered.set()

        async with aetcd.Client(host, port) as client:
            live = [(await client.lease(30)).id for _ in range(300)]
            revoked = await client.lease(30)
            await client.revoke_lease(revoked.id)
            stream = await KeepAliveStream.open(host, port, on_reply)
            try:
                # More than one frame's worth (16 KiB) and flow control's window.
                for _ in range(20):
                    await stream.send([*live, revoked.id])
                async with asyncio.timeout(5):
                    await answered.wait()
            finally:
                stream.close()
            assert {replies[lease] for lease in live} == {30}
            assert replies[revoked.id] <= 0  # etcd no longer knows it

    asyncio.run(scenario())


def test_etcd_going_away_fails_the_next_send(tmp_path):
    server = EtcdServer(tmp_path / "data", tmp_path / "etcd.log")
    server.start()
    host, port = parse_endpoints(server.endpoint)[0]

    async def scenario() -> None:
        stream = await KeepAliveStream.open(host, port, lambda lease, ttl: None)
        await stream.send([1])
        await asyncio.to_thread(server.stop)
        with pytest.raises(aetcd.ConnectionFailedError):
            async with asyncio.timeout(5):
                while True:
                    await stream.send([1])
                    await asyncio.sleep(0.05)
        with pytest.raises(aetcd.ConnectionFailedError, match="cannot reach etcd"):
            await KeepAliveStream.open(host, port, lambda lease, ttl: None)

    try:
        asyncio.run(scenario())
    finally:
        server.stop()


def test_a_peer_that_stops_answering_fails_the_stream_after_the_stall_time():
    # A listener that takes the connection and never answers: what a hung etcd
    # or a partitioned network looks like from here.
    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]

    async def scenario() -> None:
        stream = await KeepAliveStream.open("127.0.0.1", port, lambda lease, ttl: None, 0.3)
        try:
            await stream.send([1, 2, 3])
            await asyncio.sleep(0.4)
            with pytest.raises(aetcd.ConnectionFailedError, match="has not answered"):
                await stream.send([1])
        finally:
            stream.close()

    try:
        asyncio.run(scenario())
    finally:
        silent.close()


def test_a_grpc_error_from_etcd_fails_the_stream_with_its_status(etcd_server, monkeypatch):
    host, port = parse_endpoints(etcd_server.endpoint)[0]
    # A method etcd does not have: it answers with trailers only, grpc-status 12.
    monkeypatch.setattr(keepalive_stream, "PATH", "/etcdserverpb.Lease/NoSuchCall")

    async def scenario() -> None:
        stream = await KeepAliveStream.open(host, port, lambda lease, ttl: None)
        try:
            with pytest.raises(aetcd.ConnectionFailedError, match="gRPC status 12"):
                async with asyncio.timeout(5):
                    while True:
                        await stream.send([1])
                        await asyncio.sleep(0.05)
        finally:
            stream.close()

    asyncio.run(scenario())
