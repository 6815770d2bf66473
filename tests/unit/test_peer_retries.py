"""api_gateway's releases: those that arrive together leave in one call; a
release is retried when the call itself failed, and only then (a peer's own
answer, not found or refused, is final); a peer too old for the batch call
is sent one call per consumer.

A real gRPC server stands in for placement: its batch release ends the first
calls with a bare CANCELLED, as placement's server did under a burst of
deletes on PostgreSQL; an older placement (no BatchDeleteAllocations) cannot
run here, so one servicer leaves that method out."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from google.protobuf import empty_pb2
from stratus.placement.v1 import allocations_pb2_grpc

from services.api_gateway.peers import Placement
from services.common.errors import NotFound, Unavailable


class FlakyAllocations(allocations_pb2_grpc.AllocationServiceServicer):
    def __init__(self, failures: int, status: grpc.StatusCode) -> None:
        self.failures = failures
        self.status = status
        self.calls: list[list[str]] = []

    async def BatchDeleteAllocations(self, request, context):
        self.calls.append(list(request.consumer_uuids))
        if len(self.calls) <= self.failures:
            await context.abort(self.status, "")
        return empty_pb2.Empty()


class OlderAllocations(allocations_pb2_grpc.AllocationServiceServicer):
    """A placement from before BatchDeleteAllocations."""

    def __init__(self) -> None:
        self.released: list[str] = []

    async def DeleteAllocations(self, request, context):
        self.released.append(request.consumer_uuid)
        return empty_pb2.Empty()


@pytest.fixture
async def serve():
    started: list[tuple[grpc.aio.Server, grpc.aio.Channel]] = []

    async def start(servicer) -> Placement:
        server = grpc.aio.server()
        allocations_pb2_grpc.add_AllocationServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        started.append((server, channel))
        return Placement(channel)

    yield start
    for server, channel in started:
        await channel.close()
        await server.stop(None)


def consumers(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


async def test_releases_that_arrive_together_leave_in_one_call(serve):
    placement_service = FlakyAllocations(0, grpc.StatusCode.OK)
    placement = await serve(placement_service)
    first, *others = consumers(40)
    await placement.release(first)
    await asyncio.gather(*map(placement.release, others))
    # A lone release waits for nobody; the others go together, in order.
    assert placement_service.calls == [[first], others]


async def test_a_release_cut_off_twice_is_retried_and_succeeds(serve):
    placement_service = FlakyAllocations(2, grpc.StatusCode.CANCELLED)
    placement = await serve(placement_service)
    await placement.release("c-1")
    assert placement_service.calls == [["c-1"]] * 3


async def test_a_release_that_keeps_failing_gives_up_with_a_clear_error(serve):
    placement_service = FlakyAllocations(100, grpc.StatusCode.UNAVAILABLE)
    placement = await serve(placement_service)
    with pytest.raises(Unavailable) as failed:
        await placement.release("c-1")
    assert failed.value.code == "stratus.placement_unavailable"
    assert len(placement_service.calls) == 4


async def test_a_peer_answer_is_not_retried(serve):
    placement_service = FlakyAllocations(100, grpc.StatusCode.NOT_FOUND)
    placement = await serve(placement_service)
    with pytest.raises(NotFound):
        await placement.release("c-1")
    assert len(placement_service.calls) == 1


async def test_an_older_placement_is_sent_one_release_per_consumer(serve):
    older = OlderAllocations()
    placement = await serve(older)
    together = consumers(5)
    await asyncio.gather(*map(placement.release, together))
    later = consumers(1)
    await placement.release(later[0])
    assert sorted(older.released) == sorted(together + later)
