"""gRPC adapters for key pairs, server groups, hosts, limits and host events."""

from __future__ import annotations

from google.protobuf import empty_pb2
from stratus.compute.v1 import (
    host_events_pb2,
    host_events_pb2_grpc,
    hosts_pb2,
    hosts_pb2_grpc,
    key_pairs_pb2,
    key_pairs_pb2_grpc,
    limits_pb2,
    limits_pb2_grpc,
    server_groups_pb2,
    server_groups_pb2_grpc,
)

from services.api_gateway.hosts import Hosts, HostView
from services.api_gateway.key_pairs import KeyPairs
from services.api_gateway.operations import Operations
from services.api_gateway.peers import Quota
from services.api_gateway.server_groups import ServerGroups
from services.api_gateway.servers import power_name
from services.api_gateway.servicers.servers import timestamp
from services.common.context import ADMIN_ROLE, SERVICE_ROLE, current


class KeyPairServicer(key_pairs_pb2_grpc.KeyPairServiceServicer):
    def __init__(self, key_pairs: KeyPairs) -> None:
        self._key_pairs = key_pairs

    @staticmethod
    def _proto(row) -> key_pairs_pb2.KeyPair:
        return key_pairs_pb2.KeyPair(
            name=row.name,
            public_key=row.public_key,
            fingerprint=row.fingerprint,
            type=row.type,
            project_id=row.project_id,
            create_time=timestamp(row.created_at),
        )

    async def CreateKeyPair(self, request, context):
        spec = request.key_pair
        return self._proto(await self._key_pairs.create(current(), spec.name, spec.public_key))

    async def GetKeyPair(self, request, context):
        return self._proto(await self._key_pairs.get(current(), request.name))

    async def ListKeyPairs(self, request, context):
        rows = await self._key_pairs.list(current())
        return key_pairs_pb2.ListKeyPairsResponse(key_pairs=[self._proto(r) for r in rows])

    async def DeleteKeyPair(self, request, context):
        await self._key_pairs.delete(current(), request.name)
        return empty_pb2.Empty()


class ServerGroupServicer(server_groups_pb2_grpc.ServerGroupServiceServicer):
    def __init__(self, groups: ServerGroups) -> None:
        self._groups = groups

    async def _proto(self, row) -> server_groups_pb2.ServerGroup:
        return server_groups_pb2.ServerGroup(
            id=row.id,
            name=row.name,
            policy=row.policy,
            members=await self._groups.members(row.id),
            project_id=row.project_id,
            create_time=timestamp(row.created_at),
        )

    async def CreateServerGroup(self, request, context):
        spec = request.server_group
        return await self._proto(await self._groups.create(current(), spec.name, spec.policy))

    async def GetServerGroup(self, request, context):
        return await self._proto(await self._groups.get(current(), request.id))

    async def ListServerGroups(self, request, context):
        rows = await self._groups.list(current())
        return server_groups_pb2.ListServerGroupsResponse(
            server_groups=[await self._proto(r) for r in rows]
        )

    async def DeleteServerGroup(self, request, context):
        await self._groups.delete(current(), request.id)
        return empty_pb2.Empty()


def _host(view: HostView) -> hosts_pb2.Host:
    return hosts_pb2.Host(
        name=view.name,
        status="UP" if view.up else "DOWN",
        availability_zone=view.availability_zone,
        driver=view.driver,
        resource_provider_uuid=view.provider_uuid,
        resources={
            rc: hosts_pb2.Resource(capacity=capacity, used=used)
            for rc, (capacity, used) in view.resources.items()
        },
        server_count=view.server_count,
    )


class HostServicer(hosts_pb2_grpc.HostServiceServicer):
    def __init__(self, hosts: Hosts) -> None:
        self._hosts = hosts

    async def ListHosts(self, request, context):
        return hosts_pb2.ListHostsResponse(
            hosts=[_host(v) for v in await self._hosts.list(current())]
        )

    async def GetHost(self, request, context):
        return _host(await self._hosts.get(current(), request.name))


class LimitsServicer(limits_pb2_grpc.LimitsServiceServicer):
    def __init__(self, quota: Quota) -> None:
        self._quota = quota

    async def GetLimits(self, request, context):
        ctx = current()
        project = await self._quota.project(ctx.project_id)
        return limits_pb2.Limits(
            project_id=ctx.project_id,
            limits={
                name: limits_pb2.Limit(limit=q.limit, in_use=q.in_use)
                for name, q in project.resources.items()
            },
        )


class HostEventServicer(host_events_pb2_grpc.HostEventServiceServicer):
    def __init__(self, operations: Operations) -> None:
        self._operations = operations

    async def ReportPowerStates(self, request, context):
        current().require_any_role((SERVICE_ROLE, ADMIN_ROLE), "reporting power states")
        unknown = await self._operations.report_power(
            request.host, {c.server_id: power_name(c.power_state) for c in request.changes}
        )
        return host_events_pb2.ReportPowerStatesResponse(unknown_server_ids=unknown)
