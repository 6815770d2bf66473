"""Reads in a snapshot neither wait for this process's writers nor see their
uncommitted rows, on SQLite (where writers queue on one lock) and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select

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
