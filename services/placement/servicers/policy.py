"""Who may call placement: admins, and Stratus services on behalf of users."""

from services.common.context import ADMIN_ROLE, SERVICE_ROLE, current


def require_operator(action: str) -> None:
    current().require_any_role((ADMIN_ROLE, SERVICE_ROLE), action)
