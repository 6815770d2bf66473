"""Two capacity indexes on one database, as two placement replicas hold them:
a refresh picks up the other's writes and deletions, and reads versions only
of the id buckets whose digests changed."""

from __future__ import annotations

import uuid

import pytest

from services.common.db import Database
from services.placement.app import MIGRATIONS
from services.placement.capacity_index import refresh
from services.placement.capacity_index.refresh import CapacityIndex
from services.placement.capacity_index.state import BUCKET_IDS
from services.placement.inventories import Inventories
from services.placement.providers import ResourceProviders
from services.placement.resources import Inventory

PROVIDERS = BUCKET_IDS + 10  # two buckets of ids


@pytest.fixture
async def replicas(database_url):
    """(writer, reader): the writer's index sees its own writes, the reader's refreshes."""
    db = Database(database_url)
    await db.migrate(MIGRATIONS)
    writer, reader = CapacityIndex(db), CapacityIndex(db)
    yield db, writer, reader
    await db.close()


@pytest.fixture
def buckets_read(monkeypatch) -> list[list[int]]:
    """The buckets of every versions read the refreshes made."""
    reads: list[list[int]] = []
    read_versions = refresh.read_versions

    async def spy(conn, buckets):
        reads.append(list(buckets))
        return await read_versions(conn, buckets)

    monkeypatch.setattr(refresh, "read_versions", spy)
    return reads


async def test_a_refresh_reads_only_what_changed_and_sees_deletions(replicas, buckets_read):
    db, writer, reader = replicas
    providers = ResourceProviders(db, writer)
    created = [await providers.create(f"host-{uuid.uuid4().hex[:8]}") for _ in range(PROVIDERS)]
    await reader.refresh()
    assert reader.state.root_count() == PROVIDERS
    assert writer.state.digests() == reader.state.digests()

    buckets_read.clear()
    await reader.refresh()  # idle: digests agree, no versions read
    assert buckets_read == []

    last = created[-1]
    await Inventories(db, writer).replace_all(last.uuid, 0, [Inventory("VCPU", 8)])
    await reader.refresh()
    last_id = reader.state.id_of(last.uuid)
    assert buckets_read == [[last_id // BUCKET_IDS]]
    assert reader.state.node(last_id).inventories["VCPU"].total == 8

    await providers.delete(created[0].uuid)
    await reader.refresh()
    assert reader.state.id_of(created[0].uuid) is None
    assert reader.state.root_count() == PROVIDERS - 1
    assert writer.state.digests() == reader.state.digests()


async def test_a_write_missed_by_the_local_change_is_read_again(replicas):
    db, writer, _ = replicas
    provider = await ResourceProviders(db, writer).create("host-1")
    inventories = Inventories(db, CapacityIndex(db))  # another replica: this index misses it
    await inventories.replace_all(provider.uuid, 0, [Inventory("VCPU", 4)])
    provider_id = writer.state.id_of(provider.uuid)
    assert writer.state.node(provider_id).generation == 0
    await writer.refresh()
    node = writer.state.node(provider_id)
    assert (node.generation, node.inventories["VCPU"].total) == (1, 4)
