"""Who may call quota.

Claims and releases come from Stratus services acting for users (or an
admin by hand). Limits and usage are readable by the project they are
about. A member asking for another project is refused (403) rather than
told "not found": every project id has a quota (the defaults), so "not
found" would be false, and there is no existence to hide.
"""

from services.common.context import ADMIN_ROLE, SERVICE_ROLE, current
from services.common.errors import PermissionDenied


def require_operator(action: str) -> None:
    current().require_any_role((ADMIN_ROLE, SERVICE_ROLE), action)


def require_project_reader(project_id: str) -> None:
    ctx = current()
    if ctx.roles & {ADMIN_ROLE, SERVICE_ROLE} or ctx.project_id == project_id:
        return
    raise PermissionDenied(
        f"project {ctx.project_id or '(none)'} may read its own quota only, not project "
        f"{project_id}'s; an administrator can read any project's",
        code="quota.project_forbidden",
    )
