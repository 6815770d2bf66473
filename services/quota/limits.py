"""Limits: the configured defaults, the ones admins set per project, and the
per-project view of limits against usage.

A project's limit of a resource is the one an admin set for it, else the
default from configuration; -1 means unlimited. Lowering a limit under
current usage takes nothing back: claims of that resource fail until usage
drops under it (what Nova does, and the only choice that never breaks a
running server).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection

from services.common.config import QuotaSection
from services.common.db import Database, upsert_insert
from services.quota.models import ProjectLimitRow, UsageRow

# The proto's ClaimRequest/SetProjectLimitRequest rules list the same names
# (tests/unit/test_quota_resources.py keeps them in step).
RESOURCES = ("instances", "cores", "ram_mb", "key_pairs", "server_groups", "server_group_members")
# Limited per server group (members of one group), not per project.
PER_SERVER_GROUP = "server_group_members"
UNLIMITED = -1

_limits = ProjectLimitRow.__table__
_usages = UsageRow.__table__


@dataclass(frozen=True)
class Limit:
    value: int  # -1: unlimited
    is_default: bool

    def allows(self, in_use: int, more: int) -> bool:
        return self.value == UNLIMITED or in_use + more <= self.value


@dataclass(frozen=True)
class ResourceQuota:
    limit: int
    in_use: int
    is_default: bool


@dataclass(frozen=True)
class ProjectQuota:
    project_id: str
    resources: dict[str, ResourceQuota]


def default_limits(section: QuotaSection) -> dict[str, int]:
    return {resource: getattr(section, f"default_{resource}") for resource in RESOURCES}


def read_limits_of(
    conn: Connection, project_ids: list[str], defaults: dict[str, int]
) -> dict[str, dict[str, Limit]]:
    """Every resource's limit in each project: the one set for it, else the default."""
    rows = conn.execute(
        select(_limits.c.project_id, _limits.c.resource, _limits.c.hard_limit).where(
            _limits.c.project_id.in_(project_ids)
        )
    )
    set_for: dict[str, dict[str, int]] = {}
    for project_id, resource, value in rows:
        set_for.setdefault(project_id, {})[resource] = value
    return {
        project_id: {
            resource: Limit(set_for[project_id][resource], False)
            if resource in set_for.get(project_id, {})
            else Limit(defaults[resource], True)
            for resource in RESOURCES
        }
        for project_id in project_ids
    }


def _read_project(conn: Connection, project_id: str, defaults: dict[str, int]) -> ProjectQuota:
    limits = read_limits_of(conn, [project_id], defaults)[project_id]
    # MAX over scopes: a project-wide resource has one row (scope ""), and
    # server_group_members has one per group, of which the fullest matters.
    rows = conn.execute(
        select(_usages.c.resource, func.max(_usages.c.used))
        .where(_usages.c.project_id == project_id)
        .group_by(_usages.c.resource)
    )
    in_use = {resource: int(used) for resource, used in rows}
    return ProjectQuota(
        project_id,
        {
            resource: ResourceQuota(limit.value, in_use.get(resource, 0), limit.is_default)
            for resource, limit in limits.items()
        },
    )


def _set_limit(
    conn: Connection, project_id: str, resource: str, value: int, defaults: dict[str, int]
) -> ProjectQuota:
    statement = upsert_insert(conn, _limits).values(
        project_id=project_id, resource=resource, hard_limit=value
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[_limits.c.project_id, _limits.c.resource],
            set_={"hard_limit": statement.excluded.hard_limit},
        )
    )
    return _read_project(conn, project_id, defaults)


def _delete_limit(
    conn: Connection, project_id: str, resource: str, defaults: dict[str, int]
) -> ProjectQuota:
    conn.execute(
        delete(_limits).where(_limits.c.project_id == project_id, _limits.c.resource == resource)
    )
    return _read_project(conn, project_id, defaults)


class Limits:
    """Limits per project; reads and writes in synchronous Core (see
    services/quota/claims.py for why)."""

    def __init__(self, db: Database, defaults: dict[str, int]) -> None:
        self._db = db
        self._defaults = defaults

    async def project_quota(self, project_id: str) -> ProjectQuota:
        async with self._db.read() as conn:
            return await conn.run_sync(_read_project, project_id, self._defaults)

    async def set_limit(self, project_id: str, resource: str, value: int) -> ProjectQuota:
        return await self._db.run_write(_set_limit, project_id, resource, value, self._defaults)

    async def delete_limit(self, project_id: str, resource: str) -> ProjectQuota:
        """Back to the default; a limit that was never set is already gone."""
        return await self._db.run_write(_delete_limit, project_id, resource, self._defaults)
