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
import time
import zlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import asyncpg
import sqlalchemy
from alembic import command
from alembic.config import Config
from sqlalchemy import ARRAY, ColumnElement, Integer, String, any_, bindparam, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql.elements import TextClause

from services.common.errors import Conflict, Unavailable
from services.common.table_stats import TableStatistics

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
    # We emit BEGIN ourselves (see _sqlite_begin), so writers can take the
    # write lock up front instead of failing to upgrade a read snapshot.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed during a write; the busy timeout queues writers
    # instead of failing them at once.
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL never corrupts and survives a process crash; only an
    # OS crash or power loss may drop the last commits. FULL would fsync every
    # commit (about 5 ms each here). Production runs PostgreSQL.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    mode = "IMMEDIATE" if conn.get_execution_options().get(_WRITE_OPTION) else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


_WRITE_OPTION = "stratus_write"

P = ParamSpec("P")
T = TypeVar("T")


def create_engine(url: str, **pool) -> AsyncEngine:
    """The engine of a URL; `pool` (PostgreSQL) overrides the pool's sizes or
    passes server settings (``connect_args``)."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    engine = create_async_engine(url, **{"pool_size": 10, "max_overflow": 20, **pool})
    _ping_when_idle(engine.sync_engine)
    _plan_for_cached_pages(engine.sync_engine)
    return engine


# PostgreSQL's default random_page_cost (4) prices a page read by index as four
# sequential ones, as on a spinning disk. Stratus's tables are small and stay
# in cache, where both cost the same; at the default, the planner chose
# sequential scans of every table for a batch of 34 releases (a placement
# statement, on analyzed tables: 9.9 against 2.7 ms with index scans at 3,000
# providers, 7.4 against 4.5 ms at 10,000). A value the server's
# configuration (file, database or role) sets is kept.
RANDOM_PAGE_COST = 1.1


def _plan_for_cached_pages(engine: sqlalchemy.Engine) -> None:
    # Whether the server sets random_page_cost is asked once per engine
    # (pg_settings costs about a millisecond); each new session then sets it.
    configured: list[bool] = []

    async def tune(conn) -> None:  # the asyncpg connection, outside any transaction
        if not configured:
            source = await conn.fetchval(
                "SELECT source FROM pg_settings WHERE name = 'random_page_cost'"
            )
            configured.append(source != "default")
        if not configured[0]:
            await conn.execute(f"SET random_page_cost = {RANDOM_PAGE_COST}")

    def connected(dbapi_connection, _record) -> None:
        dbapi_connection.run_async(tune)

    event.listen(engine, "connect", connected)


# A pooled connection unused for this long is pinged before it is handed
# out, so one the server closed meanwhile (a restart, an idle timeout) is
# replaced instead of failing a request. SQLAlchemy's pool_pre_ping pings on
# every checkout: with asyncpg that is three round trips (BEGIN, ";",
# ROLLBACK) before each transaction, ~3% of a busy service's CPU.
PING_IDLE_S = 5.0
# Threads that run this process's SQLite reads (Database.run_read).
READER_THREADS = 2


def _ping_when_idle(engine: sqlalchemy.Engine) -> None:
    def checked_in(_dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    def checked_out(dbapi_connection, record, _proxy) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < PING_IDLE_S:
            return  # new, or in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool drops this connection and checks out another (a new one
            # if need be); SQLAlchemy's documented pessimistic-ping recipe.
            raise DisconnectionError(f"pooled connection lost while idle: {exc}") from exc

    event.listen(engine.pool, "checkin", checked_in)
    event.listen(engine.pool, "checkout", checked_out)


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


def in_ids(conn: Connection | AsyncConnection | AsyncEngine, column, ids) -> ColumnElement[bool]:
    """`column IN ids`, bound the cheapest way for conn's database.

    On PostgreSQL the ids go as one array parameter, so the statement's text
    is the same for any number of ids: SQLAlchemy expands an IN list into one
    placeholder per id on every call, which cost more than the query itself
    for a thousand ids (53 -> 35 ms per candidate search at 10k providers),
    and each list length made a new statement, which asyncpg prepares (a
    round trip) on each pooled connection and PostgreSQL parses and plans
    (closed-loop boots at 1,000 hosts: 2.1 -> 1.65 ms of CPU per server,
    PostgreSQL's share 0.38 -> 0.32; bench/boot).
    On SQLite the plain IN list measured fastest (30 ms, against 74 ms
    through json_each).
    """
    if conn.dialect.name == "postgresql":
        element = Integer if isinstance(column.type, Integer) else String
        return column == any_(bindparam(None, list(ids), type_=ARRAY(element)))
    return column.in_(ids)


def insert_missing(conn: Connection, table, rows: list[dict]) -> None:
    """INSERT rows, skipping those whose primary key exists (no error, no abort).
    Synchronous Core: from async code, `await conn.run_sync(insert_missing, ...)`."""
    if not rows:
        return
    conn.execute(upsert_insert(conn, table).on_conflict_do_nothing(), rows)


def upsert_insert(conn: Connection | AsyncConnection, table):
    """INSERT for `table` in the connection's dialect, which can say ON CONFLICT."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


# PostgreSQL: deadlock detected, serialization failure. Both mean "a
# concurrent transaction won"; the caller may retry.
_RETRYABLE_SQLSTATES = {"40P01", "40001"}
# The session is gone: a connection exception (class 08), or the server
# shutting down or not yet accepting connections (57P01-57P03).
_LOST_SQLSTATES = ("08", "57P")


def _unavailable(message: str = "the database is unavailable or busy") -> Unavailable:
    return Unavailable(
        f"{message}; nothing was changed, retry shortly", code="stratus.database_unavailable"
    )


def _lost_a_race() -> Conflict:
    return Conflict(
        "a concurrent change won; nothing was changed, retry", code="stratus.concurrent_update"
    )


@asynccontextmanager
async def _translated_errors() -> AsyncIterator[None]:
    """Database failures as Stratus errors; the transaction is rolled back, so
    nothing is half-written."""
    try:
        yield
    except (TimeoutError, OperationalError, ConnectionError, OSError) as exc:
        raise _unavailable() from exc
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES:
            raise _lost_a_race() from exc
        if exc.connection_invalidated:
            raise _unavailable("the database connection was lost") from exc
        raise


class Database:
    """Engine plus session factory for one service."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.engine = create_engine(url)
        self._alone_engine: AsyncEngine | None = None  # fetch_alone's, made on first use
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time. Queue this process's writers here,
        # in order, rather than in SQLite's busy handler, which polls with
        # growing sleeps and can starve a writer past its timeout. (Several
        # processes on one SQLite file still meet in the busy handler.)
        self._writers = asyncio.Lock() if self.engine.dialect.name == "sqlite" else nullcontext()

        self._statistics = TableStatistics(self.engine)
        self._compiled_statements: dict[TextClause, tuple[str, list[str]]] = {}
        # SQLite's writer and reader threads, made on first use (run_write, run_read).
        self._sqlite_threads: dict[str, tuple[sqlalchemy.Engine, ThreadPoolExecutor]] = {}

    async def migrate(self, migrations: Path) -> None:
        await migrate(self.engine, migrations)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """An ORM session in one write transaction, committed on success."""
        async with (
            self._writers,
            _translated_errors(),
            self._sessions() as session,
            session.begin(),
        ):
            # Procuring the connection with the option makes SQLite BEGIN IMMEDIATE.
            await session.connection(execution_options={_WRITE_OPTION: True})
            yield session

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncSession]:
        """An ORM session in one read transaction: a consistent snapshot that
        neither waits for nor holds up this process's writers (on SQLite a
        DEFERRED transaction, which WAL lets read during a write)."""
        async with _translated_errors(), self._sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection in one write transaction (the write lock taken up
        front on SQLite), committed on success, rolled back on error."""
        async with self._writers, _translated_errors(), self.engine.connect() as conn:
            conn = await conn.execution_options(**{_WRITE_OPTION: True})
            async with conn.begin():
                yield conn

    async def run_write(
        self, write: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`write(conn, *args, **kwargs)` in one write transaction, committed
        if it returns, rolled back if it raises; errors translated as write()'s.

        `write` is synchronous SQLAlchemy Core. Why: per statement, the async
        drivers cost far more Python than the statement (aiosqlite hops to
        its thread and back about nine times); a hot write transaction in
        sync Core cost a sixth of the CPU. On a SQLite file it runs in this
        process's one writer thread, on a sync connection to the same file
        (one hop per transaction), still queued behind the other writers of
        this process; elsewhere on the async connection (`run_sync`).
        """
        writer = self._sqlite_thread("writer")
        if writer is None:
            async with self.write() as conn:
                return await conn.run_sync(write, *args, **kwargs)
        engine, thread = writer
        loop = asyncio.get_running_loop()
        async with self._writers, _translated_errors():
            done = loop.run_in_executor(thread, _write_in_thread, engine, write, args, kwargs)
            # If the caller stops waiting, the write still finishes before the
            # next writer of this process starts.
            return await asyncio.shield(done)

    async def fetch_alone(self, statement: TextClause, parameters: dict[str, Any]) -> list:
        """The rows of one statement run alone (autocommit: no BEGIN or COMMIT
        round trips), for a write that is all or nothing by itself;
        PostgreSQL only. Errors as write()'s, but for the statement's own
        (asyncpg.PostgresError, with its sqlstate), which are raised as they are.

        It runs straight on asyncpg, past SQLAlchemy's execution (a greenlet,
        the cursor adapter, result rows): for placement's batch of claims,
        about a tenth of placement's CPU per claim. The statement is compiled
        once, its named parameters bound by position.
        """
        sql, names = self._compiled(statement)
        arguments = [parameters[name] for name in names]
        async with _translated_errors(), self._alone().connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            try:
                return await driver.fetch(sql, *arguments)
            except asyncpg.PostgresError as exc:
                if exc.sqlstate in _RETRYABLE_SQLSTATES:
                    raise _lost_a_race() from exc
                if not exc.sqlstate.startswith(_LOST_SQLSTATES):
                    raise  # the session lives on
                await self._forget_connections(conn)
                raise _unavailable("the database connection was lost") from exc
            except (
                OSError,
                TimeoutError,
                asyncpg.InterfaceError,
                asyncpg.InternalClientError,
            ) as exc:
                if isinstance(exc, asyncpg.InterfaceError) and not driver.is_closed():
                    raise  # a call asyncpg refused (its arguments, say): nothing was sent
                # The session is closed, or in a state asyncpg does not know
                # (closed by the server while idle in the pool).
                await self._forget_connections(conn)
                raise _unavailable("the database connection was lost") from exc

    def _compiled(self, statement: TextClause) -> tuple[str, list[str]]:
        found = self._compiled_statements.get(statement)  # a text clause is equal only to itself
        if found is None:
            compiled = statement.compile(dialect=self.engine.dialect)
            found = self._compiled_statements[statement] = (
                str(compiled),
                list(compiled.positiontup or ()),
            )
        return found

    def _alone(self) -> AsyncEngine:
        """fetch_alone's sessions, which keep a generic plan of each statement.

        Why: PostgreSQL plans a prepared statement again on each execution
        while it guesses that a plan for the parameters at hand is cheaper.
        For placement's one statements (seven and eight CTEs) that planning was
        much of their cost: with a generic plan, PostgreSQL's CPU per release
        went from 0.27-0.29 to 0.17 ms and per claim from 0.25-0.28 to 0.23 ms
        (bench/placement's claims and releases in a 1-CPU cgroup). A cached
        plan is made again when ANALYZE changes its tables' statistics. The
        service's other statements are left to PostgreSQL's choice."""
        if self._alone_engine is None:
            # Small: placement writes one batch at a time, and the main pool
            # already takes up to 30 of PostgreSQL's default 100 sessions.
            self._alone_engine = create_engine(
                self._url,
                pool_size=1,
                max_overflow=1,
                connect_args={"server_settings": {"plan_cache_mode": "force_generic_plan"}},
            )
        return self._alone_engine

    async def _forget_connections(self, conn: AsyncConnection) -> None:
        """A session was lost under fetch_alone, out of SQLAlchemy's sight:
        drop it, and both pools' others (a restarted server lost them all),
        as SQLAlchemy does when it sees a disconnect itself."""
        await conn.invalidate()
        await self._alone().dispose()
        await self.engine.dispose()

    async def run_read(
        self, read: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`read(conn, *args, **kwargs)` in one read transaction (a consistent
        snapshot); errors translated as read()'s.

        `read` is synchronous SQLAlchemy Core, for run_write's reason. On a
        SQLite file it runs on this process's reader threads, each read on a
        sync connection of its own (one hop per read, not aiosqlite's several
        per statement; a DEFERRED transaction, which WAL lets read during a
        write, so reads never queue behind writers); elsewhere on the async
        connection (`run_sync`).
        """
        reader = self._sqlite_thread("reader")
        if reader is None:
            async with self.read() as conn:
                return await conn.run_sync(read, *args, **kwargs)
        engine, threads = reader
        loop = asyncio.get_running_loop()
        async with _translated_errors():
            return await loop.run_in_executor(threads, _read_in_thread, engine, read, args, kwargs)

    def _sqlite_thread(self, role: str) -> tuple[sqlalchemy.Engine, ThreadPoolExecutor] | None:
        """The sync engine and thread(s) of this process's SQLite writer or
        readers, made on first use; None if the database is not a SQLite file."""
        url = self.engine.url
        if url.get_backend_name() != "sqlite" or not url.database:
            return None
        made = self._sqlite_threads.get(role)
        if made is None:
            # One writer (SQLite has one write lock); two readers, whose
            # connections may serve either thread.
            workers = 1 if role == "writer" else READER_THREADS
            engine = sqlalchemy.create_engine(
                url.set(drivername="sqlite"), connect_args={"check_same_thread": workers == 1}
            )
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)
            made = self._sqlite_threads[role] = (
                engine,
                ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"sqlite-{role}"),
            )
        return made

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection in one read transaction: a consistent snapshot."""
        async with _translated_errors(), self.engine.connect() as conn, conn.begin():
            yield conn

    def keep_statistics(self) -> None:
        """Analyze this database's tables as autovacuum would, where it is off
        (table_stats.py); until close()."""
        self._statistics.start()

    async def close(self) -> None:
        await self._statistics.stop()
        for engine, threads in self._sqlite_threads.values():
            await asyncio.get_running_loop().run_in_executor(threads, engine.dispose)
            threads.shutdown()
        self._sqlite_threads.clear()
        if self._alone_engine is not None:
            await self._alone_engine.dispose()
        await self.engine.dispose()


def _read_in_thread(engine: sqlalchemy.Engine, read: Callable, args: tuple, kwargs: dict):
    with engine.connect() as conn, conn.begin():
        return read(conn, *args, **kwargs)


def _write_in_thread(engine: sqlalchemy.Engine, write: Callable, args: tuple, kwargs: dict):
    with engine.connect() as conn:
        conn = conn.execution_options(**{_WRITE_OPTION: True})
        with conn.begin():
            return write(conn, *args, **kwargs)
