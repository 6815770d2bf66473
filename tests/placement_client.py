"""A small synchronous client for placement, as the other services use it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from stratus.placement.v1 import allocation_candidates_pb2 as cand_pb
from stratus.placement.v1 import (
    allocation_candidates_pb2_grpc,
    allocations_pb2_grpc,
    catalog_pb2_grpc,
    resource_providers_pb2_grpc,
)
from stratus.placement.v1 import allocations_pb2 as alloc_pb
from stratus.placement.v1 import resource_providers_pb2 as rp_pb

SERVICE = (("x-stratus-roles", "service"), ("x-stratus-user", "scheduler"))
HOST = {"VCPU": 32, "MEMORY_MB": 131072, "DISK_GB": 2048}


def new_uuid() -> str:
    return str(uuid.uuid4())


@dataclass
class Placement:
    channel: grpc.Channel
    metadata: tuple = SERVICE

    def __post_init__(self) -> None:
        self.providers = resource_providers_pb2_grpc.ResourceProviderServiceStub(self.channel)
        self.catalog = catalog_pb2_grpc.CatalogServiceStub(self.channel)
        self.allocations = allocations_pb2_grpc.AllocationServiceStub(self.channel)
        self.candidates = allocation_candidates_pb2_grpc.AllocationCandidateServiceStub(
            self.channel
        )

    def call(self, stub_method, request):
        return stub_method(request, metadata=self.metadata, timeout=30)

    def provider(
        self, name: str | None = None, parent: str = "", **inventory
    ) -> rp_pb.ResourceProvider:
        """A provider with the given inventory totals (ratio 1, nothing reserved)."""
        created = self.call(
            self.providers.CreateResourceProvider,
            rp_pb.CreateResourceProviderRequest(
                resource_provider=rp_pb.ResourceProvider(
                    name=name or f"rp-{new_uuid()[:8]}", parent_uuid=parent
                )
            ),
        )
        if inventory:
            self.set_inventory(created.uuid, 0, **inventory)
        return self.get(created.uuid)

    def set_inventory(
        self, provider_uuid: str, generation: int, **totals
    ) -> rp_pb.ProviderInventories:
        return self.call(
            self.providers.ReplaceInventories,
            rp_pb.ReplaceInventoriesRequest(
                uuid=provider_uuid,
                resource_provider_generation=generation,
                inventories=[
                    rp_pb.Inventory(resource_class=rc, total=n) for rc, n in totals.items()
                ],
            ),
        )

    def get(self, provider_uuid: str) -> rp_pb.ResourceProvider:
        return self.call(
            self.providers.GetResourceProvider, rp_pb.GetResourceProviderRequest(uuid=provider_uuid)
        )

    def traits(self, provider_uuid: str, *traits: str) -> None:
        generation = self.get(provider_uuid).generation
        self.call(
            self.providers.SetProviderTraits,
            rp_pb.SetProviderTraitsRequest(
                uuid=provider_uuid, resource_provider_generation=generation, traits=traits
            ),
        )

    def aggregates(self, provider_uuid: str, *aggregates: str) -> None:
        generation = self.get(provider_uuid).generation
        self.call(
            self.providers.SetProviderAggregates,
            rp_pb.SetProviderAggregatesRequest(
                uuid=provider_uuid, resource_provider_generation=generation, aggregates=aggregates
            ),
        )

    def claim(
        self,
        consumer: str,
        allocations: dict[str, dict[str, int]],
        generation: int | None = None,
        project: str = "project-a",
    ) -> alloc_pb.ConsumerAllocations:
        request = alloc_pb.PutAllocationsRequest(
            consumer_uuid=consumer,
            project_id=project,
            user_id="user-a",
            allocations=[
                alloc_pb.Allocation(resource_provider_uuid=p, resources=r)
                for p, r in allocations.items()
            ],
        )
        if generation is not None:
            request.consumer_generation = generation
        return self.call(self.allocations.PutAllocations, request)

    def held(self, consumer: str) -> dict[str, dict[str, int]]:
        reply = self.call(
            self.allocations.GetAllocations, alloc_pb.GetAllocationsRequest(consumer_uuid=consumer)
        )
        return {a.resource_provider_uuid: dict(a.resources) for a in reply.allocations}

    def usages(self, provider_uuid: str) -> dict[str, int]:
        reply = self.call(
            self.providers.GetProviderUsages, rp_pb.GetProviderUsagesRequest(uuid=provider_uuid)
        )
        return dict(reply.usages)

    def find(self, **kwargs) -> cand_pb.ListAllocationCandidatesResponse:
        return self.call(
            self.candidates.ListAllocationCandidates,
            cand_pb.ListAllocationCandidatesRequest(**kwargs),
        )


def requests_of(reply) -> list[dict[str, dict[str, int]]]:
    return [
        {a.resource_provider_uuid: dict(a.resources) for a in r.allocations}
        for r in reply.allocation_requests
    ]


def rpc_error(call) -> grpc.RpcError:
    """The error `call` fails with (the test fails if it succeeds)."""
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def reason(error: grpc.RpcError) -> str:
    """The stable error code (ErrorInfo.reason) of a failed call."""
    status = status_pb2.Status.FromString(
        dict(error.trailing_metadata())["grpc-status-details-bin"]
    )
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    return info.reason
