"""The scheduler's calls to placement: candidates, claims, and reading claims back."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import grpc
from stratus.placement.v1 import allocation_candidates_pb2 as cand_pb
from stratus.placement.v1 import (
    allocation_candidates_pb2_grpc,
    allocations_pb2_grpc,
    resource_providers_pb2_grpc,
)
from stratus.placement.v1 import allocations_pb2 as alloc_pb
from stratus.placement.v1 import resource_providers_pb2 as rp_pb

from services.common.errors import NoValidHost, Unavailable
from services.common.peer_errors import reason_of
from services.scheduler.request import SchedulingRequest

CALL_TIMEOUT_S = 30
CLAIM_ATTEMPTS = 3
# BatchPutAllocations takes at most this many consumers per call.
MAX_BATCH_CLAIMS = 100
# BatchGetAllocations reads at most this many consumers per call.
MAX_BATCH_READS = 1000


@dataclass(frozen=True)
class Claim:
    instance_id: str
    request: SchedulingRequest
    allocations: dict[str, dict[str, int]]


class ClaimLost(Exception):
    """Placement refused the claim: another request took the room first."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PlacementClient:
    def __init__(self, channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]) -> None:
        self._candidates = allocation_candidates_pb2_grpc.AllocationCandidateServiceStub(channel)
        self._allocations = allocations_pb2_grpc.AllocationServiceStub(channel)
        self._providers = resource_providers_pb2_grpc.ResourceProviderServiceStub(channel)
        self._metadata = metadata
        self._roots: dict[str, str] = {}  # provider -> root; a provider never changes tree here

    async def _call(self, method, request):
        try:
            return await method(request, metadata=self._metadata, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(
                    f"placement is unreachable ({exc.details()}); nothing was claimed, retry",
                    code="scheduler.placement_unavailable",
                ) from exc
            raise

    async def candidates(
        self, request: SchedulingRequest, limit: int
    ) -> cand_pb.ListAllocationCandidatesResponse:
        try:
            return await self._call(
                self._candidates.ListAllocationCandidates,
                cand_pb.ListAllocationCandidatesRequest(
                    resources=request.resources,
                    required_traits=request.required_traits,
                    forbidden_traits=request.forbidden_traits,
                    limit=limit,
                    # A random start, so replicas asking at the same moment see different hosts.
                    randomize=bool(limit),
                ),
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            # A trait or resource class no host has ever reported: nothing can hold it.
            raise NoValidHost(
                f"no host can hold the request: placement says {exc.details()}"
            ) from exc

    async def claim_all(self, claims: list[Claim]) -> None:
        """Claim for every instance in one transaction, or for none (ClaimLost).

        An instance that already holds exactly these allocations (a retry) is
        answered unchanged; holding anything else refuses the whole batch."""
        batch = alloc_pb.BatchPutAllocationsRequest(
            requests=[_put(c.instance_id, c.request, c.allocations) for c in claims]
        )
        try:
            await self._call(self._allocations.BatchPutAllocations, batch)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.ABORTED:
                raise
            raise ClaimLost(exc.details() or "conflict") from exc

    async def claim(
        self, instance_id: str, request: SchedulingRequest, allocations: dict[str, dict[str, int]]
    ) -> None:
        """Claim, or ClaimLost. A conflict that is not about room (a database
        deadlock between concurrent claims) is tried again: a claim repeated
        after it took effect is answered unchanged, so a retry never counts twice."""
        put = _put(instance_id, request, allocations)
        for attempt in range(CLAIM_ATTEMPTS):
            try:
                await self._call(self._allocations.PutAllocations, put)
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.ABORTED:
                    raise
                no_room = reason_of(exc) == "placement.insufficient_capacity"
                if no_room or attempt == CLAIM_ATTEMPTS - 1:
                    raise ClaimLost(exc.details() or "conflict") from exc
                await asyncio.sleep(random.uniform(0.005, 0.05))

    async def allocations_of(self, consumer: str) -> dict[str, dict[str, int]]:
        reply = await self._call(
            self._allocations.GetAllocations, alloc_pb.GetAllocationsRequest(consumer_uuid=consumer)
        )
        return {a.resource_provider_uuid: dict(a.resources) for a in reply.allocations}

    async def allocations_of_many(
        self, consumers: list[str]
    ) -> dict[str, dict[str, dict[str, int]]]:
        """Allocations of those consumers that hold any, one call per MAX_BATCH_READS."""
        held: dict[str, dict[str, dict[str, int]]] = {}
        for start in range(0, len(consumers), MAX_BATCH_READS):
            reply = await self._call(
                self._allocations.BatchGetAllocations,
                alloc_pb.BatchGetAllocationsRequest(
                    consumer_uuids=consumers[start : start + MAX_BATCH_READS]
                ),
            )
            for consumer in reply.consumers:
                held[consumer.consumer_uuid] = {
                    a.resource_provider_uuid: dict(a.resources) for a in consumer.allocations
                }
        return held

    async def release(self, consumer: str) -> None:
        await self._call(
            self._allocations.DeleteAllocations,
            alloc_pb.DeleteAllocationsRequest(consumer_uuid=consumer),
        )

    async def root_of(self, provider_uuid: str) -> str:
        if provider_uuid not in self._roots:
            provider = await self._call(
                self._providers.GetResourceProvider,
                rp_pb.GetResourceProviderRequest(uuid=provider_uuid),
            )
            self._roots[provider_uuid] = provider.root_uuid or provider.uuid
        return self._roots[provider_uuid]


def _put(
    instance_id: str, request: SchedulingRequest, allocations: dict[str, dict[str, int]]
) -> alloc_pb.PutAllocationsRequest:
    return alloc_pb.PutAllocationsRequest(
        consumer_uuid=instance_id,
        project_id=request.project_id,
        user_id=request.user_id,
        allocations=[
            alloc_pb.Allocation(resource_provider_uuid=rp, resources=res)
            for rp, res in allocations.items()
        ],
    )
