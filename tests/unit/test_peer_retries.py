"""api_gateway retries an idempotent release when the call itself failed, and
only then: a peer's own answer (not found, refused) is final.

A real gRPC server stands in for placement; its DeleteAllocations ends the
first calls with a bare CANCELLED, as placement's server did under a burst
of deletes on PostgreSQL."""

from __future__ import annotations

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
        self.calls = 0

    async def DeleteAllocations(self, request, context):
        self.calls += 1
        if self.calls <= self.failures:
            await context.abort(self.status, "")
        return empty_pb2.Empty()


@pytest.fixture
async def serve():
    started: list[tuple[grpc.aio.Server, grpc.aio.Channel]] = []

    async def start(servicer: FlakyAllocations) -> Placement:
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


async def test_a_release_cut_off_twice_is_retried_and_succeeds(serve):
    placement_service = FlakyAllocations(2, grpc.StatusCode.CANCELLED)
    placement = await serve(placement_service)
    await placement.release("c-1")
    assert placement_service.calls == 3


async def test_a_release_that_keeps_failing_gives_up_with_a_clear_error(serve):
    placement_service = FlakyAllocations(100, grpc.StatusCode.UNAVAILABLE)
    placement = await serve(placement_service)
    with pytest.raises(Unavailable) as failed:
        await placement.release("c-1")
    assert failed.value.code == "stratus.placement_unavailable"
    assert placement_service.calls == 4


async def test_a_peer_answer_is_not_retried(serve):
    placement_service = FlakyAllocations(100, grpc.StatusCode.NOT_FOUND)
    placement = await serve(placement_service)
    with pytest.raises(NotFound):
        await placement.release("c-1")
    assert placement_service.calls == 1
