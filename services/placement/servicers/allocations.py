"""gRPC adapters for allocations and allocation candidates."""

from __future__ import annotations

from google.protobuf import empty_pb2
from stratus.placement.v1 import allocation_candidates_pb2 as candidates_pb
from stratus.placement.v1 import allocation_candidates_pb2_grpc, allocations_pb2_grpc
from stratus.placement.v1 import allocations_pb2 as pb

from services.common.errors import FieldViolation, InvalidArgument
from services.placement.allocations import (
    Allocations,
    ConsumerAllocations,
    Holdings,
    PutAllocations,
)
from services.placement.candidates import AllocationCandidates, CandidateQuery, Group
from services.placement.servicers.candidate_replies import CandidateReplies
from services.placement.servicers.policy import require_operator


def holdings_from_proto(allocations) -> Holdings:
    held: Holdings = {}
    for index, allocation in enumerate(allocations):
        if allocation.resource_provider_uuid in held:
            raise InvalidArgument(
                f"resource provider {allocation.resource_provider_uuid} appears twice; "
                "merge its resources",
                code="placement.duplicate_provider",
                field_violations=(FieldViolation(f"allocations[{index}]", "duplicate provider"),),
            )
        held[allocation.resource_provider_uuid] = dict(allocation.resources)
    return held


def holdings_to_proto(held: Holdings) -> list[pb.Allocation]:
    return [pb.Allocation(resource_provider_uuid=p, resources=r) for p, r in sorted(held.items())]


def consumer_to_proto(consumer: ConsumerAllocations) -> pb.ConsumerAllocations:
    return pb.ConsumerAllocations(
        consumer_uuid=consumer.consumer_uuid,
        consumer_generation=consumer.generation,
        project_id=consumer.project_id,
        user_id=consumer.user_id,
        allocations=holdings_to_proto(consumer.allocations),
    )


def put_from_proto(request: pb.PutAllocationsRequest) -> PutAllocations:
    return PutAllocations(
        consumer_uuid=request.consumer_uuid,
        generation=request.consumer_generation if request.HasField("consumer_generation") else None,
        project_id=request.project_id,
        user_id=request.user_id,
        allocations=holdings_from_proto(request.allocations),
    )


class AllocationServicer(allocations_pb2_grpc.AllocationServiceServicer):
    def __init__(self, allocations: Allocations) -> None:
        self._allocations = allocations

    async def PutAllocations(self, request, context):
        require_operator("writing allocations")
        return consumer_to_proto(await self._allocations.put(put_from_proto(request)))

    async def BatchPutAllocations(self, request, context):
        require_operator("writing allocations")
        written = await self._allocations.put_many([put_from_proto(r) for r in request.requests])
        return pb.BatchPutAllocationsResponse(consumers=[consumer_to_proto(c) for c in written])

    async def GetAllocations(self, request, context):
        require_operator("reading allocations")
        return consumer_to_proto(await self._allocations.get(request.consumer_uuid))

    async def BatchGetAllocations(self, request, context):
        require_operator("reading allocations")
        found = await self._allocations.get_many(list(request.consumer_uuids))
        return pb.BatchGetAllocationsResponse(consumers=[consumer_to_proto(c) for c in found])

    async def DeleteAllocations(self, request, context):
        require_operator("deleting allocations")
        generation = (
            request.consumer_generation if request.HasField("consumer_generation") else None
        )
        await self._allocations.delete(request.consumer_uuid, generation)
        return empty_pb2.Empty()

    async def BatchDeleteAllocations(self, request, context):
        require_operator("deleting allocations")
        await self._allocations.delete_many(list(request.consumer_uuids))
        return empty_pb2.Empty()

    async def GetProjectUsages(self, request, context):
        require_operator("reading usages")
        usages = await self._allocations.project_usages(request.project_id)
        return pb.ProjectUsages(project_id=request.project_id, usages=usages)


def _group(message, suffix: str = "") -> Group:
    return Group(
        resources=dict(message.resources),
        required=frozenset(message.required_traits),
        forbidden=frozenset(message.forbidden_traits),
        member_of=frozenset(message.member_of),
        suffix=suffix,
    )


class AllocationCandidateServicer(
    allocation_candidates_pb2_grpc.AllocationCandidateServiceServicer
):
    """Answers encoded bytes (candidate_replies.py); register it with
    candidate_replies.add_to_server."""

    def __init__(self, candidates: AllocationCandidates) -> None:
        self._candidates = candidates
        self._replies = CandidateReplies()

    async def ListAllocationCandidates(self, request, context) -> bytes:
        require_operator("asking for allocation candidates")
        query = CandidateQuery(
            unnamed=_group(request),
            groups=tuple(_group(g, g.suffix) for g in request.groups),
            isolate=request.group_policy == candidates_pb.GROUP_POLICY_ISOLATE,
            in_tree=request.in_tree,
            limit=request.limit,
            randomize=request.randomize,
        )
        return self._replies.encode(await self._candidates.find(query))
