"""Server records: what api_gateway knows about each server, and its state rules.

The record is the source of truth for status and task state. Every step of a
build, an action or a delete writes its task state first, so a crash leaves
a record that says where it stopped. State changes that must not race (two
stops at once, a stop during a build) are conditional UPDATEs: the second one
matches no row and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, inspect, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm.attributes import instance_dict
from sqlalchemy.orm.instrumentation import manager_of_class
from stratus.compute.v1 import power_state_pb2

from services.api_gateway.models import ServerActionRow, ServerRow
from services.common import pagination
from services.common.context import RequestContext
from services.common.db import Database, in_ids
from services.common.errors import Conflict, NotFound

BUILD, ACTIVE, SHUTOFF, REBOOT, ERROR, DELETED = (
    "BUILD",
    "ACTIVE",
    "SHUTOFF",
    "REBOOT",
    "ERROR",
    "DELETED",
)
_servers = ServerRow.__table__
_actions = ServerActionRow.__table__
# ORM attribute -> column name (metadata_ is the "metadata" column).
SERVER_COLUMNS = {a.key: a.columns[0].name for a in inspect(ServerRow).column_attrs}


_new_server_row = manager_of_class(ServerRow).new_instance


def detached_server(**values: Any) -> ServerRow:
    """A ServerRow holding these attribute values, built without the ORM's
    per-attribute set events. Servers are read and written with Core, never
    through a session, so nothing listens to those events; built the usual
    way, the 100 rows of a multi-create cost about 6 ms of the request.
    Like the usual constructor, it refuses a name that is not an attribute."""
    unknown = values.keys() - SERVER_COLUMNS.keys()
    if unknown:
        raise TypeError(f"ServerRow has no attribute {', '.join(sorted(unknown))}")
    row = _new_server_row()
    instance_dict(row).update(values)
    return row


def server_values(row: ServerRow) -> dict[str, Any]:
    """The row's column values by column name, read straight from its state
    (through the ORM's attributes, a 100-server insert spent ~3 ms on reads
    alone); an attribute never set is None, as the ORM would answer."""
    values = instance_dict(row)
    return {column: values.get(attr) for attr, column in SERVER_COLUMNS.items()}


def server_row(columns) -> ServerRow:
    """A ServerRow (detached) from a Core row's mapping of column names."""
    return detached_server(**{attr: columns[column] for attr, column in SERVER_COLUMNS.items()})


def _read_servers(conn: Connection, query) -> list[ServerRow]:
    """The servers a Core SELECT of the servers table finds."""
    return [server_row(row._mapping) for row in conn.execute(query)]


def resources_of(row: ServerRow) -> dict[str, int]:
    """What placement must hold for the server (rows older than the resources column
    have the flavor's sizes only)."""
    if row.resources:
        return dict(row.resources)
    sizes = {"VCPU": row.vcpus, "MEMORY_MB": row.ram_mb, "DISK_GB": row.disk_gb}
    return {rc: amount for rc, amount in sizes.items() if amount > 0}


def power_name(value: int) -> str:
    """RUNNING for stratus.compute.v1.POWER_STATE_RUNNING, as users see it."""
    return power_state_pb2.PowerState.Name(value).removeprefix("POWER_STATE_")


def now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Action:
    action: str
    request_id: str
    user_id: str
    project_id: str
    start_time: datetime
    finish_time: datetime | None
    result: str
    message: str


class ServerRecords:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def remove(self, server_ids: list[str]) -> None:
        """Forget records the caller never saw (a create refused by quota)."""
        if not server_ids:
            return
        async with self._db.write() as conn:
            await conn.execute(
                _actions.delete().where(in_ids(conn, _actions.c.server_id, server_ids))
            )
            await conn.execute(_servers.delete().where(in_ids(conn, _servers.c.id, server_ids)))

    async def stuck(self, before: datetime, limit: int = 500) -> list[ServerRow]:
        """Servers whose task has not moved since `before`: a crash left them."""
        async with self._db.snapshot() as session:
            query = (
                select(ServerRow)
                .where(ServerRow.task_state != "", ServerRow.updated_at < before)
                .order_by(ServerRow.updated_at)
                .limit(limit)
            )
            return list(await session.scalars(query))

    async def _live_where(self, condition) -> list[ServerRow]:
        """Servers not deleted that match `condition`."""
        async with self._db.snapshot() as session:
            query = select(ServerRow).where(condition, ServerRow.status != DELETED)
            return list(await session.scalars(query))

    async def on_providers(self, provider_uuids: list[str]) -> dict[str, list[ServerRow]]:
        """The servers not deleted on each of these providers (those without any: absent)."""
        by_provider: dict[str, list[ServerRow]] = {}
        for row in await self._live_where(ServerRow.provider_uuid.in_(provider_uuids)):
            by_provider.setdefault(row.provider_uuid, []).append(row)
        return by_provider

    async def get(self, ctx: RequestContext, server_id: str) -> ServerRow:
        """The server, if the caller may see it; another project's is "not found"."""
        row = await self.load(server_id)
        if row is None or not (ctx.is_admin or row.project_id == ctx.project_id):
            raise NotFound(f"server {server_id} does not exist", code="compute.server_not_found")
        return row

    async def load(self, server_id: str) -> ServerRow | None:
        found = await self._db.run_read(
            _read_servers, select(_servers).where(_servers.c.id == server_id)
        )
        return found[0] if found else None

    async def load_many(self, server_ids: list[str]) -> list[ServerRow]:
        """Those of the servers that exist, in one query."""
        return await self._db.run_read(
            _read_servers,
            select(_servers).where(in_ids(self._db.engine, _servers.c.id, server_ids)),
        )

    async def list(
        self,
        ctx: RequestContext,
        *,
        status: str,
        name: str,
        host: str,
        all_projects: bool,
        page_size: int,
        page_token: str,
    ) -> tuple[list[ServerRow], str]:
        size = pagination.page_size(page_size)
        query = select(_servers)
        if not (ctx.is_admin and all_projects):
            query = query.where(_servers.c.project_id == ctx.project_id)
        if status:
            query = query.where(_servers.c.status == status)
        else:  # deleted servers only when asked for
            query = query.where(_servers.c.status != DELETED)
        if name:
            query = query.where(_servers.c.name == name)
        if host and ctx.is_admin:
            query = query.where(_servers.c.host == host)
        after = pagination.decode_token(page_token, 2)
        if after:
            created, last_id = datetime.fromisoformat(after[0]), after[1]
            query = query.where(
                (_servers.c.created_at < created)
                | (and_(_servers.c.created_at == created, _servers.c.id < last_id))
            )
        query = query.order_by(_servers.c.created_at.desc(), _servers.c.id.desc()).limit(size + 1)
        rows = await self._db.run_read(_read_servers, query)
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = pagination.encode_token([_aware(rows[-1].created_at).isoformat(), rows[-1].id])
        return rows, token

    async def update(self, server_id: str, **fields: Any) -> None:
        async with self._db.write() as conn:
            await conn.execute(
                update(_servers)
                .where(_servers.c.id == server_id)
                .values(updated_at=now(), **fields)
            )

    async def begin_task(
        self,
        ctx: RequestContext,
        server: ServerRow,
        action: str,
        task: str,
        allowed: tuple[str, ...],
        **fields: Any,
    ) -> None:
        """Move to `task` only from an idle server in one of `allowed` statuses.

        Conditional, so of two concurrent requests only one starts; the other
        is told why it cannot (a task in progress, or the wrong status)."""
        async with self._db.write() as conn:
            moved = await conn.execute(
                update(_servers)
                .where(
                    _servers.c.id == server.id,
                    _servers.c.task_state == "",
                    _servers.c.status.in_(allowed),
                )
                .values(task_state=task, updated_at=now(), **fields)
            )
            if moved.rowcount == 1:
                await conn.execute(
                    _actions.insert().values(**action_values(server.id, action, ctx, now()))
                )
                return
        current = await self.load(server.id)
        if current is not None and current.task_state:
            raise Conflict(
                f"server {server.id} is busy ({current.task_state}); try again when its "
                "task_state is empty",
                code="compute.server_busy",
            )
        status = current.status if current else DELETED
        raise Conflict(
            f"cannot {action} server {server.id} while it is {status}; "
            f"{action} needs it {' or '.join(allowed)}",
            code="compute.invalid_state",
        )

    async def update_if(self, server_id: str, expected_task: str, **fields: Any) -> bool:
        """Update only while the server is still in `expected_task` (a delete may
        have taken it over); True if it was."""
        async with self._db.write() as conn:
            moved = await conn.execute(
                update(_servers)
                .where(_servers.c.id == server_id, _servers.c.task_state == expected_task)
                .values(updated_at=now(), **fields)
            )
            return moved.rowcount == 1

    async def finish_action(
        self, server_id: str, action: str, result: str, message: str = ""
    ) -> None:
        """Close the newest open action of this kind on the server."""
        async with self._db.write() as conn:
            await _close_action(conn, server_id, action, result, message)

    async def actions(self, server_id: str) -> list[Action]:
        async with self._db.read() as conn:
            rows = await conn.execute(
                select(_actions).where(_actions.c.server_id == server_id).order_by(_actions.c.id)
            )
            return [
                Action(
                    r.action,
                    r.request_id,
                    r.user_id,
                    r.project_id,
                    _aware(r.start_time),
                    _aware(r.finish_time),
                    r.result,
                    r.message,
                )
                for r in rows
            ]

    async def on_host(self, host: str) -> list[ServerRow]:
        return await self._live_where(ServerRow.host == host)

    async def by_host(self) -> dict[str, tuple[int, str]]:
        """Per host with servers: how many (not deleted), and the host's provider."""
        async with self._db.read() as conn:
            rows = await conn.execute(
                select(_servers.c.host, func.count(), func.max(_servers.c.provider_uuid))
                .where(_servers.c.status != DELETED, _servers.c.host != "")
                .group_by(_servers.c.host)
            )
            return {host: (count, provider) for host, count, provider in rows}

    async def group_members(self, group_id: str) -> list[ServerRow]:
        return await self._live_where(ServerRow.server_group_id == group_id)


async def _close_action(
    conn: AsyncConnection, server_id: str, action: str, result: str, message: str
) -> None:
    newest = await conn.scalar(
        select(_actions.c.id)
        .where(
            _actions.c.server_id == server_id,
            _actions.c.action == action,
            _actions.c.result == "in-progress",
        )
        .order_by(_actions.c.id.desc())
        .limit(1)
    )
    if newest is not None:
        await conn.execute(
            update(_actions)
            .where(_actions.c.id == newest)
            .values(result=result, message=message, finish_time=now())
        )


def action_values(server_id: str, action: str, ctx: RequestContext, at: datetime) -> dict:
    return dict(
        server_id=server_id,
        action=action,
        request_id=ctx.request_id,
        user_id=ctx.user_id,
        project_id=ctx.project_id,
        start_time=at,
        finish_time=None,
        result="in-progress",
        message="",
    )
