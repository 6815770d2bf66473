"""placement process: providers, inventories and claims over its own database."""

from __future__ import annotations

from pathlib import Path

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc
from stratus.placement.v1 import (
    allocation_candidates_pb2,
    allocations_pb2,
    allocations_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    resource_providers_pb2,
    resource_providers_pb2_grpc,
)

from services.common.body_guard import BodyGuard
from services.common.config import ServiceSection, Settings
from services.common.db import Database, resolve_url
from services.placement.allocations import Allocations
from services.placement.candidates import AllocationCandidates
from services.placement.capacity_index.refresh import CapacityIndex
from services.placement.catalog import Catalog
from services.placement.inventories import Inventories
from services.placement.providers import ResourceProviders
from services.placement.servicers import candidate_replies
from services.placement.servicers.allocations import AllocationCandidateServicer, AllocationServicer
from services.placement.servicers.catalog import CatalogServicer
from services.placement.servicers.providers import ResourceProviderServicer
from services.placement.traits_and_aggregates import ProviderSets

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICES = [
    resource_providers_pb2.DESCRIPTOR.services_by_name["ResourceProviderService"],
    catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"],
    allocations_pb2.DESCRIPTOR.services_by_name["AllocationService"],
    allocation_candidates_pb2.DESCRIPTOR.services_by_name["AllocationCandidateService"],
]


class PlacementApp:
    name = "placement"

    def __init__(self) -> None:
        self.db: Database | None = None
        self.index: CapacityIndex | None = None

    def section(self, settings: Settings) -> ServiceSection:
        return settings.placement

    async def start(self, settings: Settings) -> None:
        self.db = Database(
            resolve_url(settings.placement.database_url, settings.state_dir, self.name)
        )
        await self.db.migrate(MIGRATIONS)
        self.index = CapacityIndex(self.db)
        await self.index.load()

    def register(self, server: grpc.aio.Server) -> list[str]:
        assert self.db and self.index, "start() opens the database before register()"
        db, index = self.db, self.index
        resource_providers_pb2_grpc.add_ResourceProviderServiceServicer_to_server(
            ResourceProviderServicer(
                ResourceProviders(db, index), Inventories(db, index), ProviderSets(db, index)
            ),
            server,
        )
        catalog_pb2_grpc.add_CatalogServiceServicer_to_server(CatalogServicer(Catalog(db)), server)
        allocations_pb2_grpc.add_AllocationServiceServicer_to_server(
            AllocationServicer(Allocations(db, index.state)), server
        )
        candidate_replies.add_to_server(
            AllocationCandidateServicer(AllocationCandidates(db, index)), server
        )
        ext_proc_grpc.add_ExternalProcessorServicer_to_server(BodyGuard(SERVICES), server)
        return [s.full_name for s in SERVICES] + ["envoy.service.ext_proc.v3.ExternalProcessor"]

    async def serving(self) -> None:
        # Other replicas' writes reach this replica's index from now on.
        assert self.index is not None and self.db is not None
        self.index.start_refreshing()
        self.db.keep_statistics()

    async def stop(self) -> None:
        if self.index is not None:
            await self.index.stop()
        if self.db is not None:
            await self.db.close()
