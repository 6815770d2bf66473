"""Leadership in etcd: exactly one replica at a time does singleton work.

A candidate puts `<prefix>/leaders/<role>` with its identity, bound to a
lease, only if the key does not exist (a transaction on its create revision).
The winner refreshes the lease every TTL/3; the others watch the key and try
again when it is deleted. When the leader dies its lease expires and the key
goes within the TTL; a leader that stops revokes the lease, so another
replica takes over at once. A leader that cannot refresh (etcd unreachable)
steps down at once, without waiting for the TTL: better no leader for a
moment than two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.common.etcd_client import ETCD_ERRORS, EtcdConnection

log = logging.getLogger(__name__)


class Leadership:
    def __init__(self, endpoints: str, prefix: str, role: str, identity: str, ttl: int = 10):
        self.key = f"{prefix.rstrip('/')}/leaders/{role}".encode()
        self.identity = identity
        self.ttl = ttl
        self._conn = EtcdConnection(
            endpoints,
            purpose=f"{role} leadership",
            call_timeout=max(1.0, ttl / 3),
            max_backoff=ttl / 3,
        )
        self._lease_id: int | None = None
        self._leading = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._campaign(), name=f"leadership-{self.key!r}")

    async def wait_leading(self) -> None:
        await self._leading.wait()

    async def stop(self) -> None:
        """Give up leadership at once (the lease is revoked) and stop campaigning."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._lease_id is not None:
            with contextlib.suppress(*ETCD_ERRORS):
                await self._conn.client().revoke_lease(self._lease_id)
                log.info("%s gave up leadership of %s", self.identity, self.key.decode())
        self._step_down()
        await self._conn.close()

    def _step_down(self) -> None:
        if self._leading.is_set():
            log.warning("%s is no longer the leader of %s", self.identity, self.key.decode())
        self._leading.clear()
        self._lease_id = None

    async def _campaign(self) -> None:
        async def on_failure() -> None:
            self._step_down()

        await self._conn.retry_forever(self._round, on_failure)

    async def _round(self) -> None:
        """One turn: lead until the lease is lost, or wait until the leader goes."""
        client = self._conn.client()
        lease = await client.lease(self.ttl)
        won, replies = await client.transaction(
            compare=[client.transactions.create(self.key) == 0],
            success=[client.transactions.put(self.key, self.identity.encode(), lease=lease.id)],
            failure=[client.transactions.get(self.key)],
        )
        self._conn.recovered()
        if not won:
            await client.revoke_lease(lease.id)
            # Wake when the leader's key goes, counting from the revision we saw, so a
            # delete in between is not missed; re-check now and then regardless.
            seen = replies[0][0][1].mod_revision if replies and replies[0] else 0
            with contextlib.suppress(asyncio.TimeoutError, *ETCD_ERRORS):
                await client.watch_once(
                    self.key, timeout=self.ttl, start_revision=seen + 1, kind=_delete_kind()
                )
            return
        self._lease_id = lease.id
        self._leading.set()
        log.info("%s is the leader of %s", self.identity, self.key.decode())
        while True:
            await asyncio.sleep(self.ttl / 3)
            reply = await client.refresh_lease(lease.id)
            if reply.TTL <= 0:  # expired while we were away: someone else may lead now
                self._step_down()
                return

    async def leader(self) -> str:
        """Who leads now ("" if nobody)."""
        found = await self._conn.client().get(self.key)
        return found.value.decode() if found else ""


def _delete_kind():
    from aetcd import rtypes

    return rtypes.EventKind.DELETE
