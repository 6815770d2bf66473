"""Each service's own database: engine, sessions, and migrations at start.

URLs may name the plain dialect (``sqlite:///x.db``, ``postgresql://...``);
the async driver (aiosqlite, asyncpg) is chosen here. Alembic migrations in
the service's ``migrations/`` folder are applied on start; on PostgreSQL an
advisory lock makes concurrent replicas take turns.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from services.common.errors import Unavailable

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def resolve_url(configured: str, state_dir: Path, service: str) -> str:
    """The async URL to use: the configured one, or a SQLite file under state_dir."""
    if not configured:
        state_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{(state_dir / f'{service}.db').resolve()}"
    url = make_url(configured)
    driver = _ASYNC_DRIVERS.get(url.drivername)
    if driver:
        url = url.set(drivername=driver)
    elif url.drivername not in _ASYNC_DRIVERS.values():
        raise ValueError(
            f"unsupported database URL scheme {url.drivername!r}; use sqlite or postgresql"
        )
    return url.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed during a write; the busy timeout queues writers
    # instead of failing them at once.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _upgrade(connection: Connection, migrations: Path) -> None:
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _lock_exclusively(path: str) -> int:
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


# Alembic keeps its context in module globals: one migration per process at a time.
_in_process = asyncio.Lock()


async def migrate(engine: AsyncEngine, migrations: Path) -> None:
    """Bring the schema to the newest revision, one replica at a time.

    Replicas take turns through a PostgreSQL advisory lock, or on SQLite an
    exclusive lock on a file beside the database.
    """
    async with _in_process, engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            lock_id = zlib.crc32(migrations.parent.name.encode())
            await conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": lock_id})
            try:
                await conn.run_sync(_upgrade, migrations)
                await conn.commit()
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
                await conn.commit()
        else:
            lock_fd = await asyncio.to_thread(
                _lock_exclusively, f"{engine.url.database}.migrate-lock"
            )
            try:
                await conn.run_sync(_upgrade, migrations)
                await conn.commit()
            finally:
                os.close(lock_fd)


class Database:
    """Engine plus session factory for one service."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def migrate(self, migrations: Path) -> None:
        await migrate(self.engine, migrations)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on error.

        A lost connection becomes Unavailable (503 at the edge), so callers see
        "retry later" rather than an internal error; nothing is half-written
        because the transaction is rolled back.
        """
        try:
            async with self._sessions() as session, session.begin():
                yield session
        except (TimeoutError, OperationalError, ConnectionError, OSError) as exc:
            raise Unavailable(
                "the database is unavailable; nothing was changed, retry shortly",
                code="stratus.database_unavailable",
            ) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise Unavailable(
                    "the database connection was lost; nothing was changed, retry shortly",
                    code="stratus.database_unavailable",
                ) from exc
            raise

    async def close(self) -> None:
        await self.engine.dispose()
