"""Compute hosts for admins: alive or not (etcd), capacity and use (placement),
and how many servers Stratus has on each (our records)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from services.api_gateway.peers import Placement
from services.api_gateway.servers import ServerRecords
from services.common.context import RequestContext
from services.common.errors import NotFound
from services.common.liveness import HostLiveness


@dataclass(frozen=True)
class HostView:
    name: str
    up: bool
    availability_zone: str
    driver: str
    provider_uuid: str
    resources: dict[str, tuple[int, int]]  # class -> (capacity, used)
    server_count: int


class Hosts:
    def __init__(
        self, liveness: HostLiveness, records: ServerRecords, placement: Placement
    ) -> None:
        self._liveness = liveness
        self._records = records
        self._placement = placement

    async def list(self, ctx: RequestContext) -> list[HostView]:
        ctx.require_admin("listing hosts")
        live = self._liveness.alive()
        by_host = await self._records.by_host()
        names = sorted(set(live) | set(by_host))
        return list(await asyncio.gather(*(self._view(n, live, by_host) for n in names)))

    async def get(self, ctx: RequestContext, name: str) -> HostView:
        ctx.require_admin("reading a host")
        live = self._liveness.alive()
        by_host = await self._records.by_host()
        if name not in live and name not in by_host:
            raise NotFound(
                f"host {name!r} is not alive and has no servers", code="compute.host_not_found"
            )
        return await self._view(name, live, by_host)

    async def _view(self, name: str, live: dict, by_host: dict) -> HostView:
        value = live.get(name, {})
        count, provider = by_host.get(name, (0, ""))
        provider = value.get("provider_uuid") or provider
        resources = await self._placement.usage(provider) if provider else {}
        return HostView(
            name=name,
            up=name in live,
            availability_zone=value.get("availability_zone", ""),
            driver=value.get("driver", ""),
            provider_uuid=provider,
            resources=resources,
            server_count=count,
        )
