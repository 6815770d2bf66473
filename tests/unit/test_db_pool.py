"""PostgreSQL's pooled connections: one the server closed while it sat idle
is replaced before a request uses it, and a connection in steady use is not
pinged before every transaction (three round trips each with asyncpg)."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text

from services.common import db as db_module
from services.common.db import Database, resolve_url
from tests.conftest import PG_ADMIN_URL


@pytest.fixture
def pg_url(postgres, tmp_path) -> str:
    return resolve_url(postgres.new(), tmp_path, "unit")


@pytest.fixture
async def pg(pg_url):
    database = Database(pg_url)
    yield database
    await database.close()


async def _backend_pid(database: Database) -> int:
    async with database.read() as conn:
        return (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()


def _count_pings(database: Database, monkeypatch) -> list[int]:
    pings: list[int] = []
    dialect = database.engine.sync_engine.dialect
    real = dialect.do_ping

    def counted(dbapi_connection):
        pings.append(1)
        return real(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", counted)
    return pings


async def test_a_connection_closed_while_idle_is_replaced_before_use(pg, monkeypatch):
    first = await _backend_pid(pg)
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
    finally:
        await admin.close()
    monkeypatch.setattr(db_module, "PING_IDLE_S", 0.0)  # as if it sat idle a while
    pings = _count_pings(pg, monkeypatch)
    # The request is answered, on another connection: nothing fails.
    assert await _backend_pid(pg) != first
    assert pings == [1]


async def test_a_connection_in_steady_use_is_not_pinged(pg, monkeypatch):
    pings = _count_pings(pg, monkeypatch)
    pids = {await _backend_pid(pg) for _ in range(5)}
    assert len(pids) == 1 and pings == []
