"""Each service's schema comes from its Alembic migrations, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys

import pytest
from sqlalchemy import inspect, text

from services.common.db import Database, resolve_url


# Every service that owns a database, and tables its first revision creates.
def _head(service: str) -> str:
    """The newest revision of a service's migrations (the files are numbered)."""
    versions = sorted((_migrations(service) / "versions").glob("[0-9]*.py"))
    return versions[-1].name.split("_", 1)[0]


SCHEMAS = {
    "api_gateway": {"flavors", "servers", "server_actions", "key_pairs", "server_groups"},
    "placement": {"resource_providers", "inventories", "consumers", "allocations"},
    "quota": {"project_limits", "claims", "usages"},
}


@pytest.fixture(params=sorted(SCHEMAS))
def service(request) -> str:
    return request.param


def _migrations(service: str):
    return importlib.import_module(f"services.{service}.app").MIGRATIONS


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, service, tmp_path, postgres):
    if request.param == "sqlite":
        return resolve_url("", tmp_path, service)
    return resolve_url(postgres.new(), tmp_path, service)


async def _tables_and_revision(db: Database):
    async with db.engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        revision = (
            await conn.execute(text("SELECT version_num FROM alembic_version"))
        ).scalar_one()
    return tables, revision


def test_migrations_create_the_schema_and_are_idempotent(service, database_url):
    migrations = _migrations(service)

    async def scenario():
        db = Database(database_url)
        try:
            await db.migrate(migrations)
            first = await _tables_and_revision(db)
            await db.migrate(migrations)  # a restart applies nothing twice
            assert await _tables_and_revision(db) == first
            return first
        finally:
            await db.close()

    tables, revision = asyncio.run(scenario())
    assert {*SCHEMAS[service], "alembic_version"} <= tables
    assert revision == _head(service)


MIGRATE_IN_A_PROCESS = """
import asyncio, importlib, sys
from services.common.db import Database
async def main():
    db = Database(sys.argv[2])
    await db.migrate(importlib.import_module(f"services.{sys.argv[1]}.app").MIGRATIONS)
    await db.close()
asyncio.run(main())
"""


def test_replicas_starting_together_migrate_one_at_a_time(service, database_url):
    replicas = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE_IN_A_PROCESS, service, database_url],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=60)[1] for p in replicas]
    assert [p.returncode for p in replicas] == [0, 0, 0], errors

    async def inspect_schema():
        db = Database(database_url)
        try:
            return await _tables_and_revision(db)
        finally:
            await db.close()

    tables, revision = asyncio.run(inspect_schema())
    assert SCHEMAS[service] <= tables and revision == _head(service)


def test_database_urls_get_async_drivers(tmp_path):
    assert resolve_url("postgresql://u@h/db", tmp_path, "x").startswith("postgresql+asyncpg://")
    assert resolve_url("sqlite:///a.db", tmp_path, "x") == "sqlite+aiosqlite:///a.db"
    assert resolve_url("", tmp_path, "x") == f"sqlite+aiosqlite:///{tmp_path.resolve()}/x.db"
    with pytest.raises(ValueError, match="mysql"):
        resolve_url("mysql://h/db", tmp_path, "x")


def test_models_and_migrations_agree(service, database_url):
    """A model changed without a migration (or the reverse) fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    metadata = importlib.import_module(f"services.{service}.models").Base.metadata

    async def diff():
        db = Database(database_url)
        try:
            await db.migrate(_migrations(service))
            async with db.engine.connect() as conn:
                return await conn.run_sync(
                    lambda c: compare_metadata(MigrationContext.configure(c), metadata)
                )
        finally:
            await db.close()

    assert asyncio.run(diff()) == []


# Tables whose rows every claim or boot updates: on PostgreSQL their pages keep
# room for HOT updates (services/common/migration_ops.py: set_fillfactor).
FILLFACTOR = {
    "api_gateway": {"servers": 80, "server_actions": 80},
    "placement": {"resource_providers": 70, "inventories": 70},
    "quota": {"usages": 70},
}


def test_hot_tables_leave_room_for_updates_on_postgresql(service, tmp_path, postgres):
    url = resolve_url(postgres.new(), tmp_path, service)

    async def fillfactors():
        db = Database(url)
        try:
            await db.migrate(_migrations(service))
            async with db.engine.connect() as conn:
                rows = await conn.execute(
                    text("SELECT relname, reloptions FROM pg_class WHERE reloptions IS NOT NULL")
                )
                return {
                    name: int(option.split("=")[1])
                    for name, options in rows
                    for option in options
                    if option.startswith("fillfactor=")
                }
        finally:
            await db.close()

    assert asyncio.run(fillfactors()) == FILLFACTOR[service]
