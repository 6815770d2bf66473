"""Who is calling, and which request this is.

The edge (Envoy) is the only party allowed to set the identity headers; a
service reads them from gRPC metadata into a RequestContext that lives for
the duration of one call.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field

from services.common.errors import PermissionDenied

REQUEST_ID_KEY = "x-request-id"
PROJECT_KEY = "x-stratus-project"
USER_KEY = "x-stratus-user"
ROLES_KEY = "x-stratus-roles"

ADMIN_ROLE = "admin"
# Stratus services calling each other (api_gateway, scheduler, host agents).
SERVICE_ROLE = "service"


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    project_id: str = ""
    user_id: str = ""
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles

    def require_admin(self, action: str) -> None:
        if not self.is_admin:
            raise PermissionDenied(
                f"{action} requires the admin role; ask an administrator",
                code="stratus.admin_required",
            )

    def require_any_role(self, roles: Iterable[str], action: str) -> None:
        wanted = frozenset(roles)
        if not (self.roles & wanted):
            raise PermissionDenied(
                f"{action} requires one of the roles {', '.join(sorted(wanted))}",
                code="stratus.role_required",
            )

    @classmethod
    def from_metadata(cls, metadata: Iterable[tuple[str, str | bytes]]) -> RequestContext:
        values = {key: value for key, value in metadata if isinstance(value, str)}
        roles = frozenset(
            role.strip() for role in values.get(ROLES_KEY, "").split(",") if role.strip()
        )
        return cls(
            request_id=values.get(REQUEST_ID_KEY) or f"req-{uuid.uuid4()}",
            project_id=values.get(PROJECT_KEY, ""),
            user_id=values.get(USER_KEY, ""),
            roles=roles,
        )


_current: ContextVar[RequestContext | None] = ContextVar("stratus_request", default=None)


def current() -> RequestContext:
    """The context of the call being served; a blank one outside any call."""
    return _current.get() or RequestContext(request_id="")


def bind(ctx: RequestContext):
    """Make ctx current; returns the token to pass to unbind()."""
    return _current.set(ctx)


def unbind(token) -> None:
    _current.reset(token)
