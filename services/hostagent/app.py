"""hostagent process.

It serves the standard gRPC health and reflection services so the mesh can
start and be checked as a whole; its own API (stratus.hostagent.v1) arrives with
issue 4.
"""

from __future__ import annotations

import grpc

from services.common.config import ServiceSection, Settings


class HostAgentApp:
    name = "hostagent"

    def section(self, settings: Settings) -> ServiceSection:
        return settings.hostagent

    async def start(self, settings: Settings) -> None:
        pass

    def register(self, server: grpc.aio.Server) -> list[str]:
        return []

    async def stop(self) -> None:
        pass
