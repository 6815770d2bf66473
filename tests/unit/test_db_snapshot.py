"""Reads in a snapshot neither wait for this process's writers nor see their
uncommitted rows, on SQLite (where writers queue on one lock) and PostgreSQL;
neither do synchronous reads (Database.run_read), which on SQLite run on
threads of their own beside the one writer thread."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select
from sqlalchemy.engine import Connection

from services.common.db import Database

metadata = MetaData()
items = Table("items", metadata, Column("id", Integer, primary_key=True))


@pytest.fixture
async def db(database_url):
    database = Database(database_url)
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield database
    await database.close()


async def test_a_read_does_not_wait_for_an_open_write(db):
    async with db.write() as conn:
        await conn.execute(insert(items).values(id=1))
        # The write is open, holding SQLite's write lock: a read still answers,
        # from before the write.
        async with asyncio.timeout(2), db.snapshot() as session:
            assert list(await session.scalars(select(items.c.id))) == []
    async with db.snapshot() as session:
        assert list(await session.scalars(select(items.c.id))) == [1]


def _ids(conn: Connection) -> list[int]:
    return list(conn.scalars(select(items.c.id).order_by(items.c.id)))


async def test_a_sync_read_does_not_wait_for_a_write_in_progress(db):
    writing, finish = threading.Event(), threading.Event()

    def slow_write(conn: Connection) -> None:
        conn.execute(insert(items).values(id=1))
        writing.set()
        finish.wait(10)  # the write stays open, holding SQLite's write lock

    # run_write on its own thread (SQLite) or the event loop (PostgreSQL, where
    # the write must not block the loop: use the async API there instead).
    if db.engine.dialect.name == "sqlite":
        write = asyncio.ensure_future(db.run_write(slow_write))
        await asyncio.to_thread(writing.wait, 5)
        try:
            async with asyncio.timeout(2):
                assert await db.run_read(_ids) == []  # answered, from before the write
        finally:
            finish.set()
            await write
    else:
        async with db.write() as conn:
            await conn.execute(insert(items).values(id=1))
            async with asyncio.timeout(2):
                assert await db.run_read(_ids) == []
    assert await db.run_read(_ids) == [1]


async def test_sync_reads_at_once_share_the_reader_threads_and_connections(db):
    async with db.write() as conn:
        await conn.execute(insert(items), [{"id": i} for i in range(3)])
    answers = await asyncio.gather(*(db.run_read(_ids) for _ in range(20)))
    assert answers == [[0, 1, 2]] * 20
