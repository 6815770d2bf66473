"""gRPC adapter for flavors: protobuf in, domain call, protobuf out."""

from __future__ import annotations

from google.protobuf import empty_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from stratus.compute.v1 import flavors_pb2, flavors_pb2_grpc

from services.api_gateway.flavors import Flavor, Flavors, NewFlavor
from services.common.context import current


def flavor_to_proto(flavor: Flavor) -> flavors_pb2.Flavor:
    created = Timestamp()
    created.FromDatetime(flavor.created_at)
    return flavors_pb2.Flavor(
        id=flavor.id,
        name=flavor.name,
        vcpus=flavor.vcpus,
        ram_mb=flavor.ram_mb,
        disk_gb=flavor.disk_gb,
        extra_specs=flavor.extra_specs,
        is_public=flavor.is_public,
        create_time=created,
    )


class FlavorServicer(flavors_pb2_grpc.FlavorServiceServicer):
    def __init__(self, flavors: Flavors) -> None:
        self._flavors = flavors

    async def CreateFlavor(self, request, context):
        spec = request.flavor
        new = NewFlavor(
            name=spec.name,
            vcpus=spec.vcpus,
            ram_mb=spec.ram_mb,
            disk_gb=spec.disk_gb,
            extra_specs=dict(spec.extra_specs),
            is_public=spec.is_public if spec.HasField("is_public") else True,
        )
        return flavor_to_proto(await self._flavors.create(current(), new))

    async def GetFlavor(self, request, context):
        return flavor_to_proto(await self._flavors.get(current(), request.id))

    async def ListFlavors(self, request, context):
        page, next_token = await self._flavors.list(
            current(), request.page_size, request.page_token
        )
        return flavors_pb2.ListFlavorsResponse(
            flavors=[flavor_to_proto(f) for f in page], next_page_token=next_token
        )

    async def DeleteFlavor(self, request, context):
        await self._flavors.delete(current(), request.id)
        return empty_pb2.Empty()
