"""api_gateway process: the public compute API over its own database."""

from __future__ import annotations

from pathlib import Path

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc
from stratus.compute.v1 import flavors_pb2, flavors_pb2_grpc

from services.api_gateway.flavors import Flavors
from services.api_gateway.servicers.flavors import FlavorServicer
from services.common.body_guard import BodyGuard
from services.common.config import ServiceSection, Settings
from services.common.db import Database, resolve_url

MIGRATIONS = Path(__file__).parent / "migrations"
PUBLIC_SERVICES = [flavors_pb2.DESCRIPTOR.services_by_name["FlavorService"]]


class ApiGatewayApp:
    name = "api_gateway"

    def __init__(self) -> None:
        self.db: Database | None = None

    def section(self, settings: Settings) -> ServiceSection:
        return settings.api_gateway

    async def start(self, settings: Settings) -> None:
        self.db = Database(
            resolve_url(settings.api_gateway.database_url, settings.state_dir, self.name)
        )
        await self.db.migrate(MIGRATIONS)

    def register(self, server: grpc.aio.Server) -> list[str]:
        assert self.db is not None, "start() opens the database before register()"
        flavors_pb2_grpc.add_FlavorServiceServicer_to_server(
            FlavorServicer(Flavors(self.db)), server
        )
        ext_proc_grpc.add_ExternalProcessorServicer_to_server(BodyGuard(PUBLIC_SERVICES), server)
        return [s.full_name for s in PUBLIC_SERVICES] + [
            "envoy.service.ext_proc.v3.ExternalProcessor"
        ]

    async def serving(self) -> None:
        pass

    async def stop(self) -> None:
        if self.db is not None:
            await self.db.close()
