"""A batch of record moves changes exactly the servers still in the task it
expects, writes every kind of field as given (text, numbers, JSON, times),
and closes those servers' open create actions; on SQLite row by row, on
PostgreSQL from arrays in one execution per statement."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import JSON, DateTime, Integer, select

from services.api_gateway.models import Base, ServerActionRow, ServerRow
from services.api_gateway.record_writer import NewRecords, RecordWriter, Transition
from services.api_gateway.servers import SERVER_COLUMNS, detached_server
from services.common.context import RequestContext
from services.common.db import Database

CTX = RequestContext(request_id="req-1", project_id="p", user_id="u")
CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
async def db(database_url):
    database = Database(database_url)
    async with database.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield database
    await database.close()


def _server(server_id: str):
    """A record in task "scheduling", every column set."""
    values = {}
    for attr, column in SERVER_COLUMNS.items():
        kind = ServerRow.__table__.c[column].type
        if isinstance(kind, DateTime):
            values[attr] = CREATED
        elif isinstance(kind, Integer):
            values[attr] = 1
        elif isinstance(kind, JSON):
            values[attr] = {}
        else:
            values[attr] = ""
    values.update(id=server_id, status="BUILD", task_state="scheduling", name=server_id)
    return detached_server(**values)


def _rows(conn, table, key):
    return {getattr(row, key): row for row in conn.execute(select(table))}


async def test_a_batch_of_moves_writes_each_kind_of_field_and_closes_the_actions(db):
    writer = RecordWriter(db)
    await writer.add([NewRecords(CTX, [_server(s) for s in ("s-1", "s-2", "s-3", "s-4")])])
    alternates = [{"host": "h-2", "address": "10.0.0.2:1", "allocations": [{"VCPU": 1}]}]
    failed_at = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)

    def spawning(server_id: str, host: str) -> Transition:
        fields = dict(task_state="spawning", host=host, host_address=f"{host}:1")
        return Transition(server_id, "scheduling", {**fields, "alternates": alternates})

    # Submitted together, so they go in one batch: two rows of one kind of
    # change, one of another, and one for a server no longer in the task.
    moved = await asyncio.gather(
        writer.move(spawning("s-1", "h-1")),
        writer.move(spawning("s-2", "h-9")),
        writer.move(
            Transition(
                "s-3",
                None,
                dict(
                    status="ERROR",
                    task_state="",
                    fault_code="compute.spawn_failed",
                    fault_message='it\'s "quoted"; and unicode: ü',
                    fault_time=failed_at,
                ),
                close=("create", "error", "no host left"),
            )
        ),
        writer.move(Transition("s-4", "spawning", dict(status="ACTIVE", task_state=""))),
    )
    assert moved == [True, True, True, False]
    assert await writer.move(
        Transition(
            "s-1",
            "spawning",
            dict(status="ACTIVE", task_state="", power_state="RUNNING"),
            close=("create", "success", "on h-1"),
        )
    )

    servers = await db.run_read(_rows, ServerRow.__table__, "id")
    actions = await db.run_read(_rows, ServerActionRow.__table__, "server_id")
    one, two, three, four = (servers[s] for s in ("s-1", "s-2", "s-3", "s-4"))
    assert (one.status, one.task_state, one.power_state, one.host) == (
        "ACTIVE",
        "",
        "RUNNING",
        "h-1",
    )
    assert (two.status, two.task_state, two.host, two.host_address) == (
        "BUILD",
        "spawning",
        "h-9",
        "h-9:1",
    )
    assert one.alternates == alternates and two.alternates == alternates
    assert (three.status, three.fault_code, three.fault_message) == (
        "ERROR",
        "compute.spawn_failed",
        'it\'s "quoted"; and unicode: ü',
    )
    assert three.fault_time.replace(tzinfo=UTC) == failed_at
    assert (four.status, four.task_state, four.host) == ("BUILD", "scheduling", "")
    for server in (one, two, three):
        assert server.updated_at.replace(tzinfo=UTC) > CREATED
    assert four.updated_at.replace(tzinfo=UTC) == CREATED

    assert (actions["s-1"].result, actions["s-1"].message) == ("success", "on h-1")
    assert (actions["s-3"].result, actions["s-3"].message) == ("error", "no host left")
    assert actions["s-1"].finish_time and actions["s-3"].finish_time
    for untouched in ("s-2", "s-4"):
        assert (actions[untouched].result, actions[untouched].finish_time) == ("in-progress", None)
