"""SIGTERM ends a service promptly, even in the middle of heavy write traffic."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid

import grpc
from stratus.placement.v1 import allocations_pb2 as alloc_pb
from stratus.placement.v1 import allocations_pb2_grpc

from deploy.local.mesh import start_service
from tests.placement_client import SERVICE, Placement

GRACE_S = 2


def test_sigterm_under_load_ends_the_process(tmp_path):
    env = dict(
        os.environ,
        STRATUS_STATE_DIR=str(tmp_path),
        STRATUS_PLACEMENT__SHUTDOWN_GRACE_S=str(GRACE_S),
        STRATUS_LOG_LEVEL="WARNING",
    )
    proc, address = start_service("placement", env)
    try:
        with grpc.insecure_channel(address) as channel:
            host = Placement(channel).provider(VCPU=100000)

        async def storm():
            async with grpc.aio.insecure_channel(address) as channel:
                stub = allocations_pb2_grpc.AllocationServiceStub(channel)

                async def claim():
                    request = alloc_pb.PutAllocationsRequest(
                        consumer_uuid=str(uuid.uuid4()),
                        project_id="p",
                        user_id="u",
                        allocations=[
                            alloc_pb.Allocation(
                                resource_provider_uuid=host.uuid, resources={"VCPU": 1}
                            )
                        ],
                    )
                    # Refused or cut off by the shutdown: either is fine here.
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        await stub.PutAllocations(request, metadata=SERVICE, timeout=30)

                tasks = [asyncio.ensure_future(claim()) for _ in range(300)]
                await asyncio.sleep(0.3)
                proc.send_signal(signal.SIGTERM)
                stopped = time.monotonic()
                await asyncio.gather(*tasks)
                return stopped

        stopped = asyncio.run(storm())
        proc.wait(timeout=GRACE_S + 15)
        assert time.monotonic() - stopped < GRACE_S + 15
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
