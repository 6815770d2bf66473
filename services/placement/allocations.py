"""Claims: who holds what, all or nothing, never beyond capacity.

A claim for one consumer (`put`) and a release (`delete`) go through group
commit (group_commit.py): those arriving together share one transaction,
each with its own outcome. A batch (`put_many`, one net change for several
consumers such as a migration's source and target) is a transaction of its
own (group_commit.write_together). The writing itself, and why it is
atomic and race-safe across replicas, is allocation_writes.py (and, for
the commonest batches on PostgreSQL, one_statement.py). Once committed, a
write's generations and usage go to this replica's capacity index.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from services.common.db import Database
from services.common.errors import InvalidArgument
from services.placement.capacity_index.state import ProviderIndex
from services.placement.consumers import (
    ConsumerAllocations,
    Holdings,
    PutAllocations,
    Release,
    allocations,
    consumers,
    read_consumer,
    read_consumers,
)
from services.placement.group_commit import GroupCommit, write_together

__all__ = ["Allocations", "ConsumerAllocations", "Holdings", "PutAllocations"]


class Allocations:
    def __init__(self, db: Database, index: ProviderIndex) -> None:
        self._db = db
        self._index = index
        self._group_commit = GroupCommit(db, index)

    async def put(self, request: PutAllocations) -> ConsumerAllocations:
        return await self._group_commit.write(request)

    async def put_many(self, requests: list[PutAllocations]) -> list[ConsumerAllocations]:
        uuids = [r.consumer_uuid for r in requests]
        if len(set(uuids)) != len(uuids):
            raise InvalidArgument(
                "each consumer may appear once in a batch", code="placement.duplicate_consumer"
            )
        return await write_together(self._db, self._index, requests)

    async def get(self, consumer_uuid: str) -> ConsumerAllocations:
        async with self._db.read() as conn:
            held = await conn.run_sync(read_consumer, consumer_uuid)
        return held or ConsumerAllocations(consumer_uuid)

    async def get_many(self, consumer_uuids: list[str]) -> list[ConsumerAllocations]:
        """The consumers among those asked that hold something, in the order asked."""
        async with self._db.read() as conn:
            return await conn.run_sync(read_consumers, consumer_uuids)

    async def delete(self, consumer_uuid: str, generation: int | None) -> None:
        """Release everything the consumer holds. A missing consumer is already deleted."""
        await self._group_commit.write(Release(consumer_uuid, generation))

    async def delete_many(self, consumer_uuids: list[str]) -> None:
        """delete for each consumer, at any generation; each stands alone (they
        share group commit's batches with the claims arriving meanwhile)."""
        await asyncio.gather(*(self.delete(uuid, None) for uuid in consumer_uuids))

    async def project_usages(self, project_id: str) -> dict[str, int]:
        async with self._db.read() as conn:
            rows = await conn.execute(
                select(allocations.c.resource_class, func.sum(allocations.c.used))
                .join(consumers, consumers.c.uuid == allocations.c.consumer_uuid)
                .where(consumers.c.project_id == project_id)
                .group_by(allocations.c.resource_class)
            )
            return {rc: int(total) for rc, total in rows}
