"""stratus.hostagent.v1.HostAgentService for many hosts on one endpoint.

Every request names its host (api_gateway always sends it); the call goes to
that host's own HostAgentServicer, unchanged. A host the simulator crashed
answers UNAVAILABLE, as a dead machine's agent would not answer at all.
"""

from __future__ import annotations

from collections.abc import Mapping

from stratus.hostagent.v1 import hostagent_pb2, hostagent_pb2_grpc

from services.common.errors import InvalidArgument, Unavailable
from services.hostagent.fleet.hosts import SimulatedHost

METHODS = [m.name for m in hostagent_pb2.DESCRIPTOR.services_by_name["HostAgentService"].methods]


class FleetServicer(hostagent_pb2_grpc.HostAgentServiceServicer):
    def __init__(self, hosts: Mapping[str, SimulatedHost]) -> None:
        self._hosts = hosts

    def _host(self, request) -> SimulatedHost:
        if not request.host:
            raise InvalidArgument(
                "this endpoint serves many simulated hosts; name one in `host`",
                code="hostagent.host_required",
            )
        host = self._hosts.get(request.host)
        if host is None:
            raise Unavailable(
                f"simulated host {request.host!r} is not running here (crashed, or never was)",
                code="hostagent.host_down",
            )
        return host


def _dispatch(name: str):
    async def method(self: FleetServicer, request, context):
        return await getattr(self._host(request).servicer, name)(request, context)

    method.__name__ = name
    return method


for _name in METHODS:
    setattr(FleetServicer, _name, _dispatch(_name))
