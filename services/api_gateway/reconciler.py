"""The reconciler: repairs what crashes leave behind, in one replica at a time.

Whichever api_gateway replica leads (an etcd election, see
services/common/leadership.py) runs a pass every reconcile_interval_s:

1. Servers whose task has not moved for stuck_after_s are resumed: a create
   before its server was placed (its quota claimed again, idempotently), a
   build during its spawn, a delete, an action. Every step they repeat is
   idempotent on the server id.
2. Per live host, placement's consumers are compared with our records: an
   allocation of a server that is deleted is released (consumers that were
   never servers are left alone: placement has other users); a server that
   should hold one and does not is reported and healed. A pass takes the next
   page of providers (hosts_per_pass of them, round robin in placement's
   order) with their generations, and our servers on them in one query. A
   host is compared only if its provider's generation or our servers on it
   changed since they last agreed: every allocation change bumps the
   generation, so an idle fleet costs a page listing per pass, not two calls
   per host (2,000 a second at 10,000 hosts without the skip). Where the
   two sides differ, ours is read again after placement's before anything
   is repaired: a server deleted between the two reads must not look like
   one that lost its allocation (in a boot benchmark's delete phase that
   claimed ~1,000 allocations back for servers being deleted).
Hosts that die need no pass: a server's host_status comes from the liveness
watch, so it shows DOWN as soon as the key goes and UP when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from services.api_gateway.build import Builder
from services.api_gateway.models import ServerRow
from services.api_gateway.operations import Operations
from services.api_gateway.peers import Placement
from services.api_gateway.servers import (
    ACTIVE,
    DELETED,
    REBOOT,
    SHUTOFF,
    ServerRecords,
    now,
    resources_of,
)
from services.common.errors import NotFound, StratusError
from services.common.leadership import Leadership
from services.common.liveness import HostLiveness

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(
        self,
        records: ServerRecords,
        builder: Builder,
        operations: Operations,
        placement: Placement,
        liveness: HostLiveness,
        leadership: Leadership,
        interval_s: float,
        stuck_after_s: float,
        hosts_per_pass: int,
    ) -> None:
        self._records = records
        self._builder = builder
        self._operations = operations
        self._placement = placement
        self._liveness = liveness
        self._leadership = leadership
        self._interval_s = interval_s
        self._stuck_after = timedelta(seconds=stuck_after_s)
        self._hosts_per_pass = hosts_per_pass  # a page: placement lists at most 1,000
        self._page_token = ""  # where the previous pass stopped
        # provider -> (generation, our servers on it) when placement and we last agreed
        self._agreed: dict[str, tuple[int, frozenset[str]]] = {}
        self._listed: set[str] = set()  # providers listed so far in this round

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval_s)
            if stop.is_set() or not self._leadership.is_leader:
                continue
            try:
                await self.reconcile_once()
            except Exception:  # one bad pass must not end the repairs
                log.exception("reconcile pass failed; trying again next interval")

    async def reconcile_once(self) -> None:
        for row in await self._records.stuck(now() - self._stuck_after):
            log.info("resuming server %s stuck in %s", row.id, row.task_state)
            if row.task_state in ("quota", "scheduling"):
                await self._builder.resume_create(row)
            elif row.task_state == "spawning":
                await self._builder.resume_spawn(row)
            elif row.task_state == "deleting":
                await self._operations.resume_delete(row)
            else:
                await self._operations.resume_power(row)
        await self._compare_next_hosts()

    async def _compare_next_hosts(self) -> None:
        """Compare the live hosts among the next page of providers, but those
        where nothing changed since placement and we last agreed."""
        generations, self._page_token = await self._placement.generations(
            self._hosts_per_pass, self._page_token
        )
        live = self._liveness.by_provider()
        hosts = {p: live[p].get("host", "") for p in generations if p in live}
        ours = await self._records.on_providers(list(hosts))
        for provider, host in hosts.items():
            servers = ours.get(provider, [])
            if self._agreed.get(provider) == (
                generations[provider],
                frozenset(row.id for row in servers),
            ):
                continue
            try:
                await self._match_allocations(host, provider, servers)
            except NotFound:  # deleted since the listing: nothing left to match
                self._agreed.pop(provider, None)
        self._listed.update(generations)
        if not self._page_token:  # a round is complete: forget providers that are gone
            self._agreed = {p: v for p, v in self._agreed.items() if p in self._listed}
            self._listed = set()

    async def _match_allocations(self, host: str, provider: str, servers: list[ServerRow]) -> None:
        generation, held = await self._placement.consumers_on(provider)
        if held != {row.id for row in servers}:
            # Read our side again, after placement's: the page's servers were
            # read before, and one deleted since (its task says so before its
            # allocation goes) would look like a server that lost its allocation.
            servers = (await self._records.on_providers([provider])).get(provider, [])
        ours = {row.id: row for row in servers}
        if held == ours.keys():
            self._agreed[provider] = (generation, frozenset(held))
            return
        for consumer in held - ours.keys():
            row = await self._records.load(consumer)
            # Only what was ours and is gone: a consumer we never knew may belong to
            # another placement user, and a server with a task is being worked on.
            if row is None or row.status != DELETED or row.task_state:
                continue
            log.warning("releasing allocation of deleted server %s on %s", consumer, host)
            await self._placement.release(consumer)
        # A server read after placement, settled and without a task, had no
        # delete under way when placement said it held nothing here. (A delete
        # that begins between our read and the claim below can still see its
        # allocation come back; the next round releases it, as any leak.)
        for server_id in ours.keys() - held:
            row = ours[server_id]
            if row.task_state or row.status not in (ACTIVE, SHUTOFF, REBOOT):
                continue
            log.warning("server %s on %s holds no allocation; claiming it again", row.id, host)
            resources = resources_of(row)
            try:
                await self._placement.move(
                    row.id, row.project_id, row.user_id or "unknown", {provider: resources}
                )
            except StratusError as exc:
                log.error("cannot claim for server %s again: %s", row.id, exc.message)
