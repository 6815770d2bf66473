"""An error's wire form: StratusError <-> google.rpc.Status.

A failed call carries it in `grpc-status-details-bin` (services/common/
interceptors.py writes it, peer_errors.py reads it); a batch call that lets
each item fail alone carries one per failed item (Google AIP-193). Either
way the stable code travels as ErrorInfo.reason and the field violations as
BadRequest, so the caller raises the very error the callee raised.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from services.common.errors import (
    GRPC_STATUS,
    FieldViolation,
    Internal,
    StratusError,
    grpc_status_of,
)

ERROR_DOMAIN = "stratus"
_BY_CODE = {status.value[0]: status for status in grpc.StatusCode}
_BY_STATUS = {status: cls for cls, status in reversed(list(GRPC_STATUS.items()))}


def to_status(error: StratusError, request_id: str = "") -> status_pb2.Status:
    details = [error_details_pb2.ErrorInfo(reason=error.code, domain=ERROR_DOMAIN)]
    if error.field_violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in error.field_violations
                ]
            )
        )
    if request_id:
        details.append(error_details_pb2.RequestInfo(request_id=request_id))
    packed = []
    for detail in details:
        any_detail = any_pb2.Any()
        any_detail.Pack(detail)
        packed.append(any_detail)
    return status_pb2.Status(
        code=grpc_status_of(error).value[0], message=error.message, details=packed
    )


def unpack(status: status_pb2.Status):
    """(ErrorInfo or None, BadRequest or None) of a status."""
    info = bad_request = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
    return info, bad_request


def violations_of(bad_request) -> tuple[FieldViolation, ...]:
    return tuple(
        FieldViolation(v.field, v.description)
        for v in (bad_request.field_violations if bad_request else ())
    )


def from_status(status: status_pb2.Status) -> StratusError:
    """The StratusError a status describes (same class, code, message, violations)."""
    info, bad_request = unpack(status)
    cls = _BY_STATUS.get(_BY_CODE.get(status.code, grpc.StatusCode.INTERNAL), Internal)
    return cls(
        status.message or "failed",
        code=info.reason if info else None,
        field_violations=violations_of(bad_request),
    )
