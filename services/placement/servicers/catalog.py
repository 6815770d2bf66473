"""gRPC adapter for resource class and trait names."""

from __future__ import annotations

from google.protobuf import empty_pb2
from stratus.placement.v1 import catalog_pb2 as pb
from stratus.placement.v1 import catalog_pb2_grpc

from services.placement.catalog import STANDARD_CLASSES, STANDARD_TRAITS, Catalog
from services.placement.servicers.policy import require_operator


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    async def ListResourceClasses(self, request, context):
        require_operator("listing resource classes")
        classes = await self._catalog.list_classes()
        return pb.ListResourceClassesResponse(
            resource_classes=[pb.ResourceClass(name=n, standard=s) for n, s in classes]
        )

    async def CreateResourceClass(self, request, context):
        require_operator("creating a resource class")
        await self._catalog.create_class(request.name)
        return pb.ResourceClass(name=request.name, standard=request.name in STANDARD_CLASSES)

    async def DeleteResourceClass(self, request, context):
        require_operator("deleting a resource class")
        await self._catalog.delete_class(request.name)
        return empty_pb2.Empty()

    async def ListTraits(self, request, context):
        require_operator("listing traits")
        traits = await self._catalog.list_traits(request.prefix)
        return pb.ListTraitsResponse(traits=[pb.Trait(name=n, standard=s) for n, s in traits])

    async def CreateTrait(self, request, context):
        require_operator("creating a trait")
        await self._catalog.create_trait(request.name)
        return pb.Trait(name=request.name, standard=request.name in STANDARD_TRAITS)

    async def DeleteTrait(self, request, context):
        require_operator("deleting a trait")
        await self._catalog.delete_trait(request.name)
        return empty_pb2.Empty()
