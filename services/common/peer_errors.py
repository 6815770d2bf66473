"""Errors of another Stratus service, raised again as our own.

When api_gateway relays quota's "quota exceeded" or the scheduler's "no
valid host", the caller must see the same status, stable code and message
(and field violations), not a generic failure. The reverse of the mapping in
services/common/errors.py, using the google.rpc details every service sends.
"""

from __future__ import annotations

import grpc
from google.rpc import status_pb2

from services.common.errors import GRPC_STATUS, Internal, StratusError, Unavailable
from services.common.status_details import unpack, violations_of

_CALL_FAILED = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
)
_BY_STATUS = {status: cls for cls, status in reversed(list(GRPC_STATUS.items()))}


def reason_of(error: grpc.RpcError) -> str:
    """The stable code (ErrorInfo.reason) of a failed call; "" if it has none."""
    info, _ = _details(error)
    return info.reason if info else ""


def from_rpc_error(error: grpc.RpcError, peer: str) -> StratusError:
    code = error.code()
    info, bad_request = _details(error)
    violations = violations_of(bad_request)
    # Without our details the call itself failed, not the peer's handler: the
    # peer was unreachable, too slow, or gRPC cancelled the call on its way.
    if code in _CALL_FAILED and not info:
        return Unavailable(
            f"{peer} is unreachable right now ({error.details()}); try again",
            code=f"stratus.{peer}_unavailable",
        )
    cls = _BY_STATUS.get(code, Internal)
    return cls(
        error.details() or f"{peer} failed",
        code=info.reason if info else None,
        field_violations=violations,
    )


def _details(error: grpc.RpcError):
    metadata = dict(error.trailing_metadata() or ())
    raw = metadata.get("grpc-status-details-bin")
    if not raw:
        return None, None
    return unpack(status_pb2.Status.FromString(raw))
