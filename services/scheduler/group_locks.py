"""The etcd locks that let one decision at a time place a server group's members.

A lock is a key created only if absent (a transaction on its create
revision), so two replicas never both hold it, and bound to a lease, so a
replica that dies holding it frees it within the lease's TTL.

aetcd's own Lock grants a lease for every acquisition, and for every failed
attempt, and never revokes it: each decision cost etcd a lease grant, and
TTL seconds later a lease expiry, on top of the two writes of the lock
itself. Here all of a replica's locks share one lease, replaced by a fresh
grant once a third of its TTL has passed, so every lock still lives at least
two thirds of the TTL from its acquisition; old leases expire on their own,
a few a minute.

Decisions of one replica about one group first wait for each other in the
process: only one of them at a time contends in etcd, instead of each
failing a transaction and watching for the holder's delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass

from aetcd import rtypes
from aetcd.exceptions import WatchTimeoutError

from services.common.etcd_client import ETCD_ERRORS, EtcdConnection


@dataclass(frozen=True)
class HeldLock:
    key: bytes
    token: bytes  # the key's value while we hold it: release deletes only our own


class GroupLocks:
    def __init__(self, conn: EtcdConnection, ttl_s: int) -> None:
        self._conn = conn
        self._ttl_s = ttl_s
        self._lease_id: int | None = None
        self._lease_granted_at = 0.0
        self._granting = asyncio.Lock()
        self._waiting: dict[bytes, asyncio.Lock] = {}  # key -> this replica's turn
        self._users: dict[bytes, int] = {}

    async def acquire(self, key: bytes, timeout_s: float) -> HeldLock | None:
        """The lock, or None if another decision held it for timeout_s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        turn = self._waiting.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            await asyncio.wait_for(turn.acquire(), timeout_s)
        except TimeoutError:
            self._leave(key)
            return None
        try:
            held = await self._acquire_in_etcd(key, deadline)
        except BaseException:
            self._leave(key, turn)
            raise
        if held is None:
            self._leave(key, turn)
        return held

    async def release(self, held: HeldLock) -> None:
        try:
            client = self._conn.client()
            await client.transaction(
                compare=[client.transactions.value(held.key) == held.token],
                success=[client.transactions.delete(held.key)],
                failure=[],
            )
        finally:
            self._leave(held.key, self._waiting[held.key])

    def _leave(self, key: bytes, turn: asyncio.Lock | None = None) -> None:
        if turn is not None:
            turn.release()
        self._users[key] -= 1
        if not self._users[key]:
            del self._users[key], self._waiting[key]

    async def _acquire_in_etcd(self, key: bytes, deadline: float) -> HeldLock | None:
        client = self._conn.client()
        held = HeldLock(key, uuid.uuid4().bytes)
        loop = asyncio.get_running_loop()
        while True:
            try:
                won, replies = await client.transaction(
                    compare=[client.transactions.create(key) == 0],
                    success=[client.transactions.put(key, held.token, lease=await self._lease())],
                    failure=[client.transactions.get(key)],
                )
            except ETCD_ERRORS:
                self._lease_id = None  # it may be what failed (etcd lost it): grant anew
                raise
            if won:
                return held
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            # Wake when the holder's key goes, counting from the revision seen, so a
            # delete in between is not missed.
            seen = replies[0][0][1].mod_revision if replies and replies[0] else 0
            with contextlib.suppress(WatchTimeoutError):
                await client.watch_once(
                    key, timeout=remaining, start_revision=seen + 1, kind=rtypes.EventKind.DELETE
                )

    async def _lease(self) -> int:
        """This replica's lease, granted less than a third of its TTL ago."""
        async with self._granting:
            now = asyncio.get_running_loop().time()
            if self._lease_id is None or now - self._lease_granted_at > self._ttl_s / 3:
                # Timed before the grant: etcd starts counting the TTL later than we do.
                lease = await self._conn.client().lease(self._ttl_s)
                self._lease_id, self._lease_granted_at = lease.id, now
            return self._lease_id
