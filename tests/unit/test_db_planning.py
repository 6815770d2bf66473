"""What Stratus does for PostgreSQL's planner: its sessions price an index
read as a sequential one unless the server's configuration says otherwise,
and where autovacuum is off it analyzes its own tables once they changed
enough (services/common/table_stats.py). This machine's PostgreSQL runs
with autovacuum off, as the second part needs."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, make_url, text

from services.common.db import RANDOM_PAGE_COST, Database, resolve_url
from services.common.table_stats import TableStatistics

metadata = MetaData()
items = Table("items", metadata, Column("id", Integer, primary_key=True))
others = Table("others", metadata, Column("id", Integer, primary_key=True))


@pytest.fixture
def url(postgres, tmp_path) -> str:
    postgres.require()
    return resolve_url(postgres.new(), tmp_path, "unit")


async def _setting(db: Database) -> float:
    async with db.engine.connect() as conn:
        return float(await conn.scalar(text("SHOW random_page_cost")))


async def test_sessions_plan_for_cached_pages_unless_the_server_is_configured(url):
    db = Database(url)
    try:
        assert await _setting(db) == RANDOM_PAGE_COST
        name = make_url(url).database
        async with db.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'ALTER DATABASE "{name}" SET random_page_cost = 2.5'))
    finally:
        await db.close()
    db = Database(url)  # new sessions see the database's own setting
    try:
        assert await _setting(db) == 2.5
    finally:
        await db.close()


async def _reltuples(db: Database) -> dict[str, float]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT relname, reltuples FROM pg_class WHERE relname IN ('items', 'others')")
        )
        return dict(rows.all())


async def _flush_table_counters(db: Database) -> None:
    async with db.engine.connect() as conn:
        await conn.execute(text("SELECT pg_stat_force_next_flush()"))


async def test_tables_changed_enough_are_analyzed_where_autovacuum_is_off(url):
    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.execute(insert(items), [{"id": i} for i in range(1000)])
            await conn.execute(insert(others), [{"id": i} for i in range(20)])
            await conn.execute(text("SELECT pg_stat_force_next_flush()"))
        statistics = TableStatistics(db.engine)
        assert not await statistics.autovacuum_is_on()
        assert (await _reltuples(db))["items"] < 0  # never analyzed: no statistics

        assert await statistics.analyze_stale() == ["items"]  # 20 rows: not enough yet
        assert (await _reltuples(db))["items"] == 1000
        assert await statistics.analyze_stale() == []  # nothing changed since

        async with db.engine.begin() as conn:
            await conn.execute(insert(items), [{"id": i} for i in range(1000, 1050)])
            await conn.execute(insert(others), [{"id": i} for i in range(20, 80)])
            await conn.execute(text("SELECT pg_stat_force_next_flush()"))
        # 50 more of 1,000 is under 50 + 10%; 80 rows changed in all is over 50.
        assert await statistics.analyze_stale() == ["others"]
    finally:
        await db.close()
