"""The one exception tree of Stratus, and the one table mapping it to gRPC.

Every error carries a stable machine code (``compute.flavor_exists``) that
clients may branch on, and a message that tells a person what to do next.
Envoy maps the gRPC status to HTTP with its standard table (HTTP_STATUS), so
conflicts are ALREADY_EXISTS or ABORTED (409), never FAILED_PRECONDITION (400).
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class StratusError(Exception):
    """Base of every error a caller may see. Subclasses fix the gRPC status."""

    default_code = "stratus.error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field_violations: tuple[FieldViolation, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.field_violations = field_violations


class InvalidArgument(StratusError):
    default_code = "stratus.invalid_argument"


class Unauthenticated(StratusError):
    default_code = "stratus.unauthenticated"


class PermissionDenied(StratusError):
    default_code = "stratus.permission_denied"


class NotFound(StratusError):
    default_code = "stratus.not_found"


class AlreadyExists(StratusError):
    default_code = "stratus.already_exists"


class Conflict(StratusError):
    """A concurrent update won a race (stale generation); retrying may succeed."""

    default_code = "stratus.concurrent_update"


class QuotaExceeded(StratusError):
    default_code = "quota.exceeded"


class NoValidHost(StratusError):
    """Nothing can hold the request now: every host was removed by some step."""

    default_code = "compute.no_valid_host"


class Unavailable(StratusError):
    """A dependency (database, etcd, another service) is unreachable right now."""

    default_code = "stratus.unavailable"


class Internal(StratusError):
    default_code = "stratus.internal"


GRPC_STATUS: dict[type[StratusError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    Conflict: grpc.StatusCode.ABORTED,
    QuotaExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    NoValidHost: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Internal: grpc.StatusCode.INTERNAL,
}

# Envoy's gRPC -> HTTP table (grpc_json_transcoder / grpc_http1_bridge).
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


def grpc_status_of(error: StratusError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in GRPC_STATUS:
            return GRPC_STATUS[cls]
    return grpc.StatusCode.INTERNAL
