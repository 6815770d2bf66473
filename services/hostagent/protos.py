"""Conversions between the driver's plain types and stratus.hostagent.v1 messages."""

from __future__ import annotations

from stratus.compute.v1 import power_state_pb2
from stratus.hostagent.v1 import hostagent_pb2 as pb

from services.hostagent.drivers.base import DriverServer, PowerState, ServerSpec

_POWER = {
    PowerState.NOSTATE: power_state_pb2.POWER_STATE_NOSTATE,
    PowerState.RUNNING: power_state_pb2.POWER_STATE_RUNNING,
    PowerState.PAUSED: power_state_pb2.POWER_STATE_PAUSED,
    PowerState.SHUTDOWN: power_state_pb2.POWER_STATE_SHUTDOWN,
    PowerState.CRASHED: power_state_pb2.POWER_STATE_CRASHED,
}


def power_state_to_proto(state: PowerState) -> int:
    return _POWER[state]


def server_to_proto(server: DriverServer) -> pb.Server:
    return pb.Server(
        id=server.server_id,
        name=server.name,
        power_state=_POWER[server.power_state],
        vcpus=server.vcpus,
        ram_mb=server.ram_mb,
        disk_gb=server.disk_gb,
        image_ref=server.image_ref,
    )


def spec_from_proto(request: pb.SpawnRequest) -> ServerSpec:
    return ServerSpec(
        server_id=request.server_id,
        name=request.name,
        vcpus=request.vcpus,
        ram_mb=request.ram_mb,
        disk_gb=request.disk_gb,
        image_ref=request.image_ref,
        allocations={a.resource_provider_uuid: dict(a.resources) for a in request.allocations},
    )
