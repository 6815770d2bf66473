"""quota process: limits and usage per project over its own database."""

from __future__ import annotations

from pathlib import Path

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc
from stratus.quota.v1 import quota_pb2, quota_pb2_grpc

from services.common.body_guard import BodyGuard
from services.common.config import ServiceSection, Settings
from services.common.db import Database, resolve_url
from services.quota.claims import Claims
from services.quota.limits import Limits, default_limits
from services.quota.servicers.quota import QuotaServicer

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICES = [quota_pb2.DESCRIPTOR.services_by_name["QuotaService"]]


class QuotaApp:
    name = "quota"

    def __init__(self) -> None:
        self.db: Database | None = None
        self.defaults: dict[str, int] = {}

    def section(self, settings: Settings) -> ServiceSection:
        return settings.quota

    async def start(self, settings: Settings) -> None:
        self.defaults = default_limits(settings.quota)
        self.db = Database(resolve_url(settings.quota.database_url, settings.state_dir, self.name))
        await self.db.migrate(MIGRATIONS)

    def register(self, server: grpc.aio.Server) -> list[str]:
        assert self.db is not None, "start() opens the database before register()"
        quota_pb2_grpc.add_QuotaServiceServicer_to_server(
            QuotaServicer(Claims(self.db, self.defaults), Limits(self.db, self.defaults)), server
        )
        ext_proc_grpc.add_ExternalProcessorServicer_to_server(BodyGuard(SERVICES), server)
        return [s.full_name for s in SERVICES] + ["envoy.service.ext_proc.v3.ExternalProcessor"]

    async def serving(self) -> None:
        assert self.db is not None
        self.db.keep_statistics()

    async def stop(self) -> None:
        if self.db is not None:
            await self.db.close()
