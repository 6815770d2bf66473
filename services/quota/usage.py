"""Usage rows: made to exist, locked in one order, grown or shrunk in one statement.

Every claim and release locks the rows it changes in (project, resource,
scope) order before changing them, so concurrent writers (other replicas on
PostgreSQL) queue on the row locks instead of deadlocking, and a total read
under the lock stays true until the transaction ends. On SQLite the write
transaction holds the database's one write lock already (FOR UPDATE is not
rendered there). Synchronous Core: claims and releases run whole in
Database.run_write.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select, tuple_, update
from sqlalchemy.engine import Connection

from services.common.db import insert_missing
from services.quota.limits import PER_SERVER_GROUP
from services.quota.models import UsageRow

_usages = UsageRow.__table__

# (project_id, resource, scope): scope is "" for project-wide resources and the
# server group id for server_group_members.
Key = tuple[str, str, str]

_add = (
    update(_usages)
    .where(
        _usages.c.project_id == bindparam("k_project"),
        _usages.c.resource == bindparam("k_resource"),
        _usages.c.scope == bindparam("k_scope"),
    )
    .values(used=_usages.c.used + bindparam("k_delta"))
)


def usage_key(project_id: str, resource: str, server_group_id: str) -> Key:
    return project_id, resource, server_group_id if resource == PER_SERVER_GROUP else ""


def lock_usage(conn: Connection, keys: list[Key]) -> dict[Key, int]:
    """What each key's row holds now, locked until the transaction ends."""
    keys = sorted(set(keys))
    insert_missing(
        conn,
        _usages,
        [{"project_id": p, "resource": r, "scope": s, "used": 0} for p, r, s in keys],
    )
    rows = conn.execute(
        select(_usages.c.project_id, _usages.c.resource, _usages.c.scope, _usages.c.used)
        .where(tuple_(_usages.c.project_id, _usages.c.resource, _usages.c.scope).in_(keys))
        .order_by(_usages.c.project_id, _usages.c.resource, _usages.c.scope)
        .with_for_update()
    )
    return {(p, r, s): used for p, r, s, used in rows}


def add_usage(conn: Connection, deltas: dict[Key, int]) -> None:
    """Add each delta (negative to give back) to its locked row, in one statement."""
    conn.execute(
        _add,
        [
            {"k_project": p, "k_resource": r, "k_scope": s, "k_delta": n}
            for (p, r, s), n in sorted(deltas.items())
        ],
    )
