"""The simulator's control calls, for tests and benchmarks only.

`Status` says how far the process got (hosts running, reported to placement,
registered in etcd); `CrashHosts` makes hosts die as a machine would: their
leases are no longer renewed (etcd expires them after the TTL, nothing is
revoked) and their agent stops answering. Requests and answers are
google.protobuf.Struct, so no contract is published for them: they live on
the simulator's own port, never behind the edge, and need the service role.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
from google.protobuf import struct_pb2

from services.common.context import ADMIN_ROLE, SERVICE_ROLE, current

SERVICE = "stratus.internal.FleetControl"
STATUS = f"/{SERVICE}/Status"
CRASH_HOSTS = f"/{SERVICE}/CrashHosts"


def _struct(values: dict) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out


def control_handler(
    status: Callable[[], dict], crash: Callable[[list[str]], int]
) -> grpc.GenericRpcHandler:
    async def status_call(request: struct_pb2.Struct, context) -> struct_pb2.Struct:
        current().require_any_role((SERVICE_ROLE, ADMIN_ROLE), "reading the simulator's status")
        return _struct(status())

    async def crash_call(request: struct_pb2.Struct, context) -> struct_pb2.Struct:
        current().require_any_role((SERVICE_ROLE, ADMIN_ROLE), "crashing simulated hosts")
        return _struct({"crashed": crash([str(h) for h in request["hosts"]])})

    def method(behaviour) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            behaviour,
            request_deserializer=struct_pb2.Struct.FromString,
            response_serializer=struct_pb2.Struct.SerializeToString,
        )

    return grpc.method_handlers_generic_handler(
        SERVICE, {"Status": method(status_call), "CrashHosts": method(crash_call)}
    )
