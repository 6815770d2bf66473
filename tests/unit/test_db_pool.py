"""PostgreSQL's pooled connections: one the server closed while it sat idle
is replaced before a request uses it, a connection in steady use is not
pinged before every transaction (three round trips each with asyncpg), and
fetch_alone's sessions (straight on asyncpg) survive a statement's error and
are replaced when lost."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import String, bindparam, text

from services.common import db as db_module
from services.common.db import Database, resolve_url
from services.common.errors import Unavailable
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


# As placement's statements bind lists as typed arrays, this binds text.
_SESSION = text(
    "SELECT pg_backend_pid(), current_setting('plan_cache_mode'), CAST(:n AS integer)"
).bindparams(bindparam("n", type_=String))


async def test_fetch_alone_keeps_its_session_through_the_statements_own_error(pg):
    """A statement's own error (here an invalid integer, as placement's
    self-check raises) reaches the caller as asyncpg's, with its sqlstate,
    and the session stays in the pool. fetch_alone's sessions keep generic
    plans; the service's others are left to PostgreSQL."""
    pid, plans, _ = (await pg.fetch_alone(_SESSION, {"n": "1"}))[0]
    assert plans == "force_generic_plan"
    with pytest.raises(asyncpg.PostgresError) as refused:
        await pg.fetch_alone(_SESSION, {"n": "not a number"})
    assert refused.value.sqlstate == "22P02"
    assert (await pg.fetch_alone(_SESSION, {"n": "2"}))[0][0] == pid
    async with pg.read() as conn:
        assert (await conn.execute(text("SHOW plan_cache_mode"))).scalar_one() == "auto"


async def test_fetch_alone_answers_retryably_when_its_session_is_lost(pg):
    pid = (await pg.fetch_alone(_SESSION, {"n": "1"}))[0][0]
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
    finally:
        await admin.close()
    with pytest.raises(Unavailable) as lost:
        await pg.fetch_alone(_SESSION, {"n": "1"})
    assert lost.value.code == "stratus.database_unavailable"
    # The next call gets a new session.
    assert (await pg.fetch_alone(_SESSION, {"n": "1"}))[0][0] != pid
