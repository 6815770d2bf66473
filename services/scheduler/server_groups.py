"""Server group membership, and the lock that makes hard (anti-)affinity hold.

Two requests for members of one group may reach two scheduler replicas at the
same moment; each would see the other's member nowhere yet and could put
both on one host. So a decision about a group's members runs under an etcd
lock on the group (group_locks.py), and the members are recorded in etcd
(before their claims, so a crash between the two never hides a claimed
member). Where a member is comes from placement, the truth about claims: its
allocation's root provider, read for all the group's members in one call. A
recorded member without an allocation is gone (deleted, or its claim failed)
and is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from services.common.errors import Unavailable
from services.common.etcd_client import ETCD_ERRORS, EtcdConnection
from services.scheduler.group_locks import GroupLocks
from services.scheduler.placement import PlacementClient


class ServerGroups:
    def __init__(
        self, conn: EtcdConnection, prefix: str, placement: PlacementClient, lock_ttl_s: int
    ) -> None:
        self._conn = conn
        self._prefix = prefix.rstrip("/")
        self._placement = placement
        self._lock_ttl_s = lock_ttl_s
        self._locks = GroupLocks(conn, lock_ttl_s)

    def _members_prefix(self, group_id: str) -> bytes:
        return f"{self._prefix}/server_groups/{group_id}/members/".encode()

    @contextlib.asynccontextmanager
    async def locked(self, group_id: str) -> AsyncIterator[None]:
        """Hold the group's lock; a lease frees it if this replica dies holding it."""
        key = f"{self._prefix}/locks/server_groups/{group_id}".encode()
        async with self._etcd("lock the server group"):
            held = await self._locks.acquire(key, timeout_s=self._lock_ttl_s)
        if held is None:
            raise Unavailable(
                f"server group {group_id} stayed locked for {self._lock_ttl_s}s by "
                "another scheduling decision; retry",
                code="scheduler.group_busy",
            )
        try:
            yield
        finally:
            with contextlib.suppress(*ETCD_ERRORS):
                await self._locks.release(held)

    async def member_providers(self, group_id: str, excluding: tuple[str, ...]) -> set[str]:
        """Root providers holding the group's other members; forgets members that are gone."""
        async with self._etcd("read the server group"):
            prefix = self._members_prefix(group_id)
            found = await self._conn.client().get_prefix(prefix)
            members = [kv.key[len(prefix) :].decode() for kv in found]
        members = [m for m in members if m not in excluding]
        # One read for the whole group: a decision costs placement one query, not one per member.
        placed = await self._placement.allocations_of_many(members) if members else {}
        gone = [m for m in members if not placed.get(m)]
        if gone:
            await self.forget(group_id, gone)
        providers = {rp for allocations in placed.values() for rp in allocations}
        return set(await asyncio.gather(*(self._placement.root_of(rp) for rp in providers)))

    async def record(self, group_id: str, instance_ids: tuple[str, ...]) -> None:
        prefix = self._members_prefix(group_id)
        async with self._etcd("record server group members"):
            client = self._conn.client()
            for instance_id in instance_ids:
                await client.put(prefix + instance_id.encode(), b"")

    async def forget(self, group_id: str, instance_ids: list[str] | tuple[str, ...]) -> None:
        prefix = self._members_prefix(group_id)
        async with self._etcd("forget server group members"):
            client = self._conn.client()
            for instance_id in instance_ids:
                await client.delete(prefix + instance_id.encode())

    @contextlib.asynccontextmanager
    async def _etcd(self, action: str) -> AsyncIterator[None]:
        try:
            yield
        except ETCD_ERRORS as exc:
            await self._conn.close()  # the next call dials afresh
            raise Unavailable(
                f"cannot {action}: etcd is unreachable ({exc}); nothing was claimed, retry",
                code="scheduler.etcd_unavailable",
            ) from exc
