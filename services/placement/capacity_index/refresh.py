"""Keeping the index coherent with the database: the first load, the
periodic refresh that picks up other replicas' writes, and reads on demand."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import select

from services.common.db import Database
from services.placement.capacity_index.loading import read_digests, read_nodes, read_versions
from services.placement.capacity_index.state import ProviderIndex
from services.placement.models import ProviderRow
from services.placement.providers import not_found

log = logging.getLogger(__name__)

# How stale another replica's writes may be here. A stale index costs at worst
# a refused claim or a host missed for this long, never an over-commit.
REFRESH_INTERVAL_S = 1.0


class CapacityIndex:
    def __init__(self, db: Database, interval_s: float = REFRESH_INTERVAL_S) -> None:
        self.state = ProviderIndex()
        self._db = db
        self._interval_s = interval_s
        self._task: asyncio.Task | None = None

    async def load(self) -> None:
        async with self._db.read() as conn:
            nodes = await read_nodes(conn)
        for node in nodes:
            self.state.put(node)

    def start_refreshing(self) -> None:
        self._task = asyncio.create_task(self._refresh_forever(), name="capacity-index-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.refresh()
            except Exception:  # e.g. the database is down: keep the last state
                log.warning("capacity index refresh failed; retrying", exc_info=True)

    async def refresh(self) -> None:
        """Read again every provider whose generation or place in a tree
        differs from the database, and forget those deleted there.

        Digests first (state.py): an idle refresh at 10,000 providers moves 40
        rows instead of 10,000 versions, and a busy one compares only the
        buckets where something changed. Taken before the read, a digest here
        can only lag the database's (this replica applies its writes after
        they commit, and generations only grow), so equal digests mean nothing
        to read; the one blind spot is a provider deleted and another created
        with its id and version within an interval, which comparing versions
        by id missed as well.
        """
        held = self.state.digests()
        removals = self.state.removals
        async with self._db.read() as conn:
            digests = await read_digests(conn)
            differ = sorted(
                b for b in held.keys() | digests.keys() if held.get(b) != digests.get(b)
            )
            if not differ:
                return
            before = self.state.versions(differ)
            versions = await read_versions(conn, differ)
            stale = [i for i, version in versions.items() if before.get(i) != version]
            nodes = await read_nodes(conn, stale) if stale else []
        for node in nodes:
            # A provider this replica deleted meanwhile stays deleted.
            if removals == self.state.removals or self.state.node(node.id) is not None:
                self.state.put(node)
        # Held before the read yet absent from it: deleted in the database.
        for gone in before.keys() - versions.keys():
            self.state.remove(gone)

    async def reload_tree(self, provider_uuid: str) -> int:
        """Read the whole tree of a provider now; its root id. Not found if it
        does not exist."""
        async with self._db.read() as conn:
            root_id = await conn.scalar(
                select(ProviderRow.root_id).where(ProviderRow.uuid == provider_uuid)
            )
            if root_id is None:
                raise not_found(provider_uuid)
            ids = list(
                await conn.scalars(select(ProviderRow.id).where(ProviderRow.root_id == root_id))
            )
            nodes = await read_nodes(conn, ids)
        for node in nodes:
            self.state.put(node)
        return root_id

    async def root_of(self, provider_uuid: str) -> int:
        """The root id of a provider's tree, read from the database when this
        replica has not seen the provider yet."""
        provider_id = self.state.id_of(provider_uuid)
        if provider_id is None:
            return await self.reload_tree(provider_uuid)
        return self.state.node(provider_id).root_id
