"""Server groups: where a project's servers go relative to each other.

The scheduler enforces the policy when it chooses hosts; here live the
groups themselves (each holds one unit of the server_groups quota) and the
check a build makes before moving a failed spawn to an alternate host.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import delete, select

from services.api_gateway.models import ServerGroupRow, ServerRow
from services.api_gateway.peers import Quota
from services.api_gateway.servers import ServerRecords
from services.common.context import RequestContext
from services.common.db import Database
from services.common.errors import Conflict, NotFound


class ServerGroups:
    def __init__(self, db: Database, records: ServerRecords, quota: Quota) -> None:
        self._db = db
        self._records = records
        self._quota = quota

    async def create(self, ctx: RequestContext, name: str, policy: str) -> ServerGroupRow:
        row = ServerGroupRow(
            id=str(uuid.uuid4()),
            project_id=ctx.project_id,
            name=name,
            policy=policy,
            created_at=datetime.now(UTC),
        )
        await self._quota.claim(row.id, ctx.project_id, {"server_groups": 1})
        async with self._db.transaction() as session:
            session.add(row)
        return row

    async def get(self, ctx: RequestContext, group_id: str) -> ServerGroupRow:
        async with self._db.snapshot() as session:
            row = await session.get(ServerGroupRow, group_id)
        if row is None or not (ctx.is_admin or row.project_id == ctx.project_id):
            raise NotFound(
                f"server group {group_id} does not exist", code="compute.server_group_not_found"
            )
        return row

    async def list(self, ctx: RequestContext) -> list[ServerGroupRow]:
        async with self._db.snapshot() as session:
            query = (
                select(ServerGroupRow)
                .where(ServerGroupRow.project_id == ctx.project_id)
                .order_by(ServerGroupRow.created_at)
            )
            return list(await session.scalars(query))

    async def members(self, group_id: str) -> list[str]:
        return [row.id for row in await self._records.group_members(group_id)]

    async def delete(self, ctx: RequestContext, group_id: str) -> None:
        row = await self.get(ctx, group_id)
        if await self.members(group_id):
            raise Conflict(
                f"server group {group_id} still has servers; delete them first",
                code="compute.server_group_in_use",
            )
        async with self._db.transaction() as session:
            await session.execute(delete(ServerGroupRow).where(ServerGroupRow.id == row.id))
        await self._quota.release(row.id)

    async def allows(self, server: ServerRow, host: str) -> bool:
        """May this member move to `host` without breaking a hard policy?"""
        if server.server_group_policy not in ("affinity", "anti-affinity"):
            return True
        others = {
            row.host
            for row in await self._records.group_members(server.server_group_id or "")
            if row.id != server.id and row.host
        }
        if server.server_group_policy == "anti-affinity":
            return host not in others
        return not others or others == {host}
