"""gRPC adapter for servers: protobuf in, domain call, protobuf out."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp
from stratus.compute.v1 import servers_pb2, servers_pb2_grpc

from services.api_gateway.build import Builder, NewServer
from services.api_gateway.models import ServerRow
from services.api_gateway.operations import Operations
from services.api_gateway.servers import ServerRecords
from services.common.context import current
from services.common.errors import FieldViolation, InvalidArgument

UPDATABLE = ("name", "metadata")


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


class ServerServicer(servers_pb2_grpc.ServerServiceServicer):
    def __init__(self, records: ServerRecords, builder: Builder, operations: Operations) -> None:
        self._records = records
        self._builder = builder
        self._operations = operations

    def _proto(self, row: ServerRow) -> servers_pb2.Server:
        server = servers_pb2.Server(
            id=row.id,
            name=row.name,
            flavor=row.flavor_name,
            image_ref=row.image_ref,
            key_name=row.key_name,
            availability_zone=row.availability_zone,
            server_group_id=row.server_group_id or "",
            metadata=row.metadata_,
            user_data=row.user_data,
            status=row.status,
            task_state=row.task_state,
            power_state=row.power_state,
            host=row.host,
            host_status=("UP" if self._operations.host_up(row.host) else "DOWN")
            if row.host
            else "",
            project_id=row.project_id,
            user_id=row.user_id,
            vcpus=row.vcpus,
            ram_mb=row.ram_mb,
            disk_gb=row.disk_gb,
            create_time=timestamp(row.created_at),
            update_time=timestamp(row.updated_at),
        )
        if row.fault_message:
            server.fault.code = row.fault_code
            server.fault.message = row.fault_message
            if row.fault_time:
                server.fault.time.CopyFrom(timestamp(row.fault_time))
        return server

    async def CreateServer(self, request, context):
        spec = request.server
        minimum = request.min_count or 1
        new = NewServer(
            name=spec.name,
            flavor=spec.flavor,
            image_ref=spec.image_ref,
            key_name=spec.key_name,
            availability_zone=spec.availability_zone,
            server_group_id=spec.server_group_id,
            metadata=dict(spec.metadata),
            user_data=spec.user_data,
            min_count=minimum,
            max_count=request.max_count or minimum,
        )
        rows = await self._builder.create(current(), new)
        return servers_pb2.CreateServerResponse(servers=[self._proto(r) for r in rows])

    async def GetServer(self, request, context):
        return self._proto(await self._records.get(current(), request.id))

    async def ListServers(self, request, context):
        rows, token = await self._records.list(
            current(),
            status=request.status,
            name=request.name,
            host=request.host,
            all_projects=request.all_projects,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return servers_pb2.ListServersResponse(
            servers=[self._proto(r) for r in rows], next_page_token=token
        )

    async def UpdateServer(self, request, context):
        ctx, spec = current(), request.server
        row = await self._records.get(ctx, spec.id)
        paths = list(request.update_mask.paths) or [
            p for p in UPDATABLE if (spec.name if p == "name" else spec.metadata)
        ]
        unknown = [p for p in paths if p not in UPDATABLE]
        if unknown:
            raise InvalidArgument(
                f"update_mask: only {', '.join(UPDATABLE)} can change, not {', '.join(unknown)}",
                code="stratus.invalid_field",
                field_violations=tuple(FieldViolation("update_mask", p) for p in unknown),
            )
        fields = {}
        if "name" in paths:
            if not spec.name:
                raise InvalidArgument(
                    "server.name: required",
                    code="stratus.invalid_field",
                    field_violations=(FieldViolation("server.name", "required"),),
                )
            fields["name"] = spec.name
        if "metadata" in paths:
            fields["metadata"] = dict(spec.metadata)  # the column; metadata_ in the ORM
        if fields:
            await self._records.update(row.id, **fields)
        return self._proto(await self._records.get(ctx, row.id))

    async def DeleteServer(self, request, context):
        return self._proto(await self._operations.delete(current(), request.id))

    async def RebootServer(self, request, context):
        hard = request.type == "HARD"
        return self._proto(await self._operations.reboot(current(), request.id, hard))

    async def StopServer(self, request, context):
        return self._proto(await self._operations.stop(current(), request.id))

    async def StartServer(self, request, context):
        return self._proto(await self._operations.start(current(), request.id))

    async def ListServerActions(self, request, context):
        row = await self._records.get(current(), request.id)
        return servers_pb2.ListServerActionsResponse(
            actions=[
                servers_pb2.ServerAction(
                    action=a.action,
                    request_id=a.request_id,
                    user_id=a.user_id,
                    project_id=a.project_id,
                    start_time=timestamp(a.start_time),
                    finish_time=timestamp(a.finish_time),
                    result=a.result,
                    message=a.message,
                )
                for a in await self._records.actions(row.id)
            ]
        )
