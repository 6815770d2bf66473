"""gRPC adapter for resource providers, inventories, traits, aggregates, usages."""

from __future__ import annotations

from google.protobuf import empty_pb2
from stratus.placement.v1 import resource_providers_pb2 as pb
from stratus.placement.v1 import resource_providers_pb2_grpc

from services.placement.inventories import Inventories
from services.placement.providers import Provider, ProviderFilter, ResourceProviders
from services.placement.resources import Inventory
from services.placement.servicers.policy import require_operator
from services.placement.traits_and_aggregates import ProviderSets


def provider_to_proto(provider: Provider) -> pb.ResourceProvider:
    return pb.ResourceProvider(
        uuid=provider.uuid,
        name=provider.name,
        generation=provider.generation,
        parent_uuid=provider.parent_uuid,
        root_uuid=provider.root_uuid,
    )


def inventory_from_proto(inventory: pb.Inventory) -> Inventory:
    return Inventory(
        resource_class=inventory.resource_class,
        total=inventory.total,
        reserved=inventory.reserved,
        min_unit=inventory.min_unit,
        max_unit=inventory.max_unit,
        step_size=inventory.step_size,
        allocation_ratio=inventory.allocation_ratio,
    )


def inventories_to_proto(provider_uuid: str, generation: int, inventories: list[Inventory]):
    return pb.ProviderInventories(
        resource_provider_uuid=provider_uuid,
        resource_provider_generation=generation,
        inventories=[
            pb.Inventory(
                resource_class=i.resource_class,
                total=i.total,
                reserved=i.reserved,
                min_unit=i.min_unit,
                max_unit=i.max_unit,
                step_size=i.step_size,
                allocation_ratio=i.allocation_ratio,
                used=i.used,
            )
            for i in inventories
        ],
    )


class ResourceProviderServicer(resource_providers_pb2_grpc.ResourceProviderServiceServicer):
    def __init__(
        self, providers: ResourceProviders, inventories: Inventories, sets: ProviderSets
    ) -> None:
        self._providers = providers
        self._inventories = inventories
        self._sets = sets

    async def CreateResourceProvider(self, request, context):
        require_operator("creating a resource provider")
        spec = request.resource_provider
        return provider_to_proto(
            await self._providers.create(spec.name, spec.uuid, spec.parent_uuid)
        )

    async def GetResourceProvider(self, request, context):
        require_operator("reading resource providers")
        return provider_to_proto(await self._providers.get(request.uuid))

    async def ListResourceProviders(self, request, context):
        require_operator("listing resource providers")
        wanted = ProviderFilter(
            name=request.name,
            uuid=request.uuid,
            member_of=tuple(request.member_of),
            in_tree=request.in_tree,
            required_traits=tuple(request.required_traits),
            resources=request.resources,
        )
        page, token = await self._providers.list(wanted, request.page_size, request.page_token)
        return pb.ListResourceProvidersResponse(
            resource_providers=[provider_to_proto(p) for p in page], next_page_token=token
        )

    async def UpdateResourceProvider(self, request, context):
        require_operator("updating a resource provider")
        provider = await self._providers.update(
            request.uuid, request.generation, request.name, request.parent_uuid
        )
        return provider_to_proto(provider)

    async def DeleteResourceProvider(self, request, context):
        require_operator("deleting a resource provider")
        await self._providers.delete(request.uuid)
        return empty_pb2.Empty()

    async def GetInventories(self, request, context):
        require_operator("reading inventories")
        provider, inventories = await self._inventories.get(request.uuid)
        return inventories_to_proto(provider.uuid, provider.generation, inventories)

    async def ReplaceInventories(self, request, context):
        require_operator("setting inventories")
        generation, inventories = await self._inventories.replace_all(
            request.uuid,
            request.resource_provider_generation,
            [inventory_from_proto(i) for i in request.inventories],
        )
        return inventories_to_proto(request.uuid, generation, inventories)

    async def SetInventory(self, request, context):
        require_operator("setting an inventory")
        generation, inventories = await self._inventories.set_one(
            request.uuid,
            request.resource_provider_generation,
            inventory_from_proto(request.inventory),
        )
        return inventories_to_proto(request.uuid, generation, inventories)

    async def DeleteInventory(self, request, context):
        require_operator("deleting an inventory")
        generation, inventories = await self._inventories.delete_one(
            request.uuid, request.resource_provider_generation, request.resource_class
        )
        return inventories_to_proto(request.uuid, generation, inventories)

    async def GetProviderTraits(self, request, context):
        require_operator("reading traits")
        provider, traits = await self._sets.get_traits(request.uuid)
        return pb.ProviderTraits(
            resource_provider_uuid=provider.uuid,
            resource_provider_generation=provider.generation,
            traits=traits,
        )

    async def SetProviderTraits(self, request, context):
        require_operator("setting traits")
        generation, traits = await self._sets.set_traits(
            request.uuid, request.resource_provider_generation, list(request.traits)
        )
        return pb.ProviderTraits(
            resource_provider_uuid=request.uuid,
            resource_provider_generation=generation,
            traits=traits,
        )

    async def GetProviderAggregates(self, request, context):
        require_operator("reading aggregates")
        provider, aggregates = await self._sets.get_aggregates(request.uuid)
        return pb.ProviderAggregates(
            resource_provider_uuid=provider.uuid,
            resource_provider_generation=provider.generation,
            aggregates=aggregates,
        )

    async def SetProviderAggregates(self, request, context):
        require_operator("setting aggregates")
        generation, aggregates = await self._sets.set_aggregates(
            request.uuid, request.resource_provider_generation, list(request.aggregates)
        )
        return pb.ProviderAggregates(
            resource_provider_uuid=request.uuid,
            resource_provider_generation=generation,
            aggregates=aggregates,
        )

    async def GetProviderUsages(self, request, context):
        require_operator("reading usages")
        provider, usages = await self._sets.usages(request.uuid)
        return pb.ProviderUsages(
            resource_provider_uuid=provider.uuid,
            resource_provider_generation=provider.generation,
            usages=usages,
        )

    async def GetProviderAllocations(self, request, context):
        require_operator("reading allocations")
        provider, held = await self._sets.allocations(request.uuid)
        return pb.ProviderAllocations(
            resource_provider_uuid=provider.uuid,
            resource_provider_generation=provider.generation,
            allocations=[
                pb.ProviderAllocations.ConsumerResources(consumer_uuid=c, resources=r)
                for c, r in held.items()
            ],
        )
