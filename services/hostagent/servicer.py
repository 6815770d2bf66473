"""stratus.hostagent.v1.HostAgentService: adapts gRPC calls to the driver.

Calls about one server id are serialized here, so two retries of the same
spawn (or a spawn racing a destroy) reach the driver one after the other and
idempotency holds without every driver re-implementing it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from contextlib import asynccontextmanager
from importlib.metadata import version

from google.protobuf import empty_pb2
from stratus.hostagent.v1 import hostagent_pb2 as pb
from stratus.hostagent.v1 import hostagent_pb2_grpc

from services.common.context import ADMIN_ROLE, SERVICE_ROLE, current
from services.common.errors import InvalidArgument
from services.hostagent.drivers.base import Capability, Driver, DriverServer, unsupported
from services.hostagent.identity import HostIdentity
from services.hostagent.power_sync import PowerStateSync
from services.hostagent.protos import server_to_proto, spec_from_proto

AGENT_VERSION = version("stratus")


class HostAgentServicer(hostagent_pb2_grpc.HostAgentServiceServicer):
    def __init__(self, driver: Driver, identity: HostIdentity, sync: PowerStateSync) -> None:
        self._driver = driver
        self._identity = identity
        self._sync = sync
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._users: defaultdict[str, int] = defaultdict(int)

    def _authorize(self, request, action: str) -> None:
        current().require_any_role((SERVICE_ROLE, ADMIN_ROLE), action)
        if request.host and request.host != self._identity.host:
            raise InvalidArgument(
                f"this agent runs host {self._identity.host!r}, not {request.host!r}; "
                "the caller's host address is stale",
                code="hostagent.wrong_host",
            )

    @asynccontextmanager
    async def _server_lock(self, server_id: str):
        # Counted, so the lock is dropped only when nobody holds or awaits it.
        lock = self._locks[server_id]
        self._users[server_id] += 1
        try:
            async with lock:
                yield
        finally:
            self._users[server_id] -= 1
            if not self._users[server_id]:
                del self._users[server_id], self._locks[server_id]

    def _answer(self, server: DriverServer) -> pb.Server:
        self._sync.observed(server.server_id, server.power_state)
        return server_to_proto(server)

    async def Spawn(self, request: pb.SpawnRequest, context) -> pb.Server:
        self._authorize(request, "spawning a server")
        async with self._server_lock(request.server_id):
            return self._answer(await self._driver.spawn(spec_from_proto(request)))

    async def Destroy(self, request: pb.DestroyRequest, context) -> empty_pb2.Empty:
        self._authorize(request, "destroying a server")
        async with self._server_lock(request.server_id):
            await self._driver.destroy(request.server_id)
            self._sync.forget(request.server_id)
        return empty_pb2.Empty()

    def _require(self, capability: Capability) -> None:
        if capability not in self._driver.capabilities:
            raise unsupported(self._driver.name, capability)

    async def Reboot(self, request: pb.RebootRequest, context) -> pb.Server:
        self._authorize(request, "rebooting a server")
        hard = request.type == pb.REBOOT_TYPE_HARD
        self._require(Capability.REBOOT_HARD if hard else Capability.REBOOT_SOFT)
        async with self._server_lock(request.server_id):
            return self._answer(await self._driver.reboot(request.server_id, hard=hard))

    async def PowerOff(self, request: pb.PowerOffRequest, context) -> pb.Server:
        self._authorize(request, "powering a server off")
        self._require(Capability.POWER_OFF)
        async with self._server_lock(request.server_id):
            return self._answer(await self._driver.power_off(request.server_id))

    async def PowerOn(self, request: pb.PowerOnRequest, context) -> pb.Server:
        self._authorize(request, "powering a server on")
        self._require(Capability.POWER_ON)
        async with self._server_lock(request.server_id):
            return self._answer(await self._driver.power_on(request.server_id))

    async def GetServer(self, request: pb.GetServerRequest, context) -> pb.Server:
        self._authorize(request, "reading a server")
        return server_to_proto(await self._driver.get(request.server_id))

    async def ListServers(self, request: pb.ListServersRequest, context) -> pb.ListServersResponse:
        self._authorize(request, "listing servers")
        servers = await self._driver.list_servers()
        return pb.ListServersResponse(servers=[server_to_proto(s) for s in servers])

    async def GetHostInfo(self, request: pb.GetHostInfoRequest, context) -> pb.HostInfo:
        self._authorize(request, "reading host info")
        host = await self._driver.describe_host()
        servers = await self._driver.list_servers()
        return pb.HostInfo(
            host=self._identity.host,
            driver=host.driver,
            hypervisor_version=host.hypervisor_version,
            agent_version=AGENT_VERSION,
            vcpus=host.resources.vcpus,
            ram_mb=host.resources.ram_mb,
            disk_gb=host.resources.disk_gb,
            free_ram_mb=host.free_ram_mb,
            server_count=len(servers),
            traits=sorted(host.traits),
            resource_provider_uuid=self._identity.provider_uuid,
        )
