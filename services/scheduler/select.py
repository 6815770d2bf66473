"""select_destinations: the scheduler's algorithm, top to bottom.

For each instance: take candidates from placement (it already checked room
and traits), drop the hosts a filter refuses, weigh the rest, pick at random
among the best few, and claim in placement; on a lost claim, the next host.
Every step counts what it removed, so "no valid host" can say why.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from services.common.config import SchedulerSection
from services.common.errors import NoValidHost
from services.common.liveness import HostLiveness
from services.scheduler.filters import FILTERS
from services.scheduler.host_state import HostState, host_states
from services.scheduler.placement import ClaimLost, PlacementClient
from services.scheduler.request import Placing, SchedulingRequest
from services.scheduler.server_groups import ServerGroups
from services.scheduler.weighers import weigh

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Destination:
    host: str
    address: str
    provider_uuid: str
    allocations: dict[str, dict[str, int]]


@dataclass(frozen=True)
class Selection:
    instance_id: str
    destination: Destination
    alternates: tuple[Destination, ...]


@dataclass
class Tally:
    """What each step removed, for the no-valid-host message."""

    candidates: int = 0
    removed: Counter = field(default_factory=Counter)
    lost_claims: int = 0

    def explain(self, request: SchedulingRequest, instance_id: str) -> str:
        wanted = ", ".join(f"{rc} {n}" for rc, n in sorted(request.resources.items()))
        if not self.candidates:
            traits = ""
            if request.required_traits or request.forbidden_traits:
                traits = (
                    f" with traits {', '.join(request.required_traits) or '-'}"
                    f" and without {', '.join(request.forbidden_traits) or '-'}"
                )
            return f"no host has room for {wanted}{traits}; placement found no candidate"
        reasons = [
            f"{n:,} removed by {name} ({_REASONS[name]})" for name, n in self.removed.most_common()
        ]
        if self.lost_claims:
            reasons.append(f"{self.lost_claims:,} lost to concurrent claims")
        return (
            f"no valid host for instance {instance_id} ({wanted}): "
            f"{self.candidates:,} candidates; " + "; ".join(reasons)
        )


_REASONS = {f.name: f.reason for f in FILTERS}


class Scheduler:
    def __init__(
        self,
        placement: PlacementClient,
        liveness: HostLiveness,
        groups: ServerGroups,
        config: SchedulerSection,
        rng: random.Random | None = None,
    ) -> None:
        self._placement = placement
        self._liveness = liveness
        self._groups = groups
        self._config = config
        self._rng = rng or random.Random()

    async def select_destinations(self, request: SchedulingRequest) -> list[Selection]:
        group = request.server_group
        if group is None:
            return await self._select(request, set())
        # Members of one group are placed one decision at a time, across replicas:
        # hard anti-affinity must hold even when two members arrive together.
        async with self._groups.locked(group.id):
            providers = await self._groups.member_providers(group.id, request.instance_ids)
            # Recorded before any claim: a crash after a claim never hides a member.
            await self._groups.record(group.id, request.instance_ids)
            try:
                return await self._select(request, providers)
            except BaseException:
                with contextlib.suppress(Exception):
                    await self._groups.forget(group.id, request.instance_ids)
                raise

    async def _select(
        self, request: SchedulingRequest, group_providers: set[str]
    ) -> list[Selection]:
        live = self._live_by_provider()
        # A random sample first: at 10,000 hosts reading and weighing all of them buys
        # no better choice than the best of a few dozen (see bench/scheduler.py).
        sample = max(self._config.candidate_sample_size, 2 * len(request.instance_ids))
        hosts, complete = await self._candidates(request, live, sample)
        selections: list[Selection] = []
        claimed: list[str] = []
        try:
            for instance_id in request.instance_ids:
                placing = Placing(request, instance_id, group_providers)
                selection, tally = await self._place(placing, hosts)
                if selection is None and not complete:
                    # The sample left too few: read every candidate before saying no.
                    hosts, complete = await self._candidates(request, live, 0)
                    selection, tally = await self._place(placing, hosts)
                if selection is None:
                    raise NoValidHost(tally.explain(request, instance_id))
                selections.append(selection)
                claimed.append(instance_id)
                group_providers.add(selection.destination.provider_uuid)
        except BaseException:
            # All or nothing: a multi-create that cannot place every instance keeps none.
            for instance_id in claimed:
                with contextlib.suppress(Exception):
                    await self._placement.release(instance_id)
            raise
        return selections

    def _live_by_provider(self) -> dict[str, dict[str, Any]]:
        return {
            value["provider_uuid"]: value
            for value in self._liveness.alive().values()
            if "provider_uuid" in value
        }

    async def _candidates(
        self,
        request: SchedulingRequest,
        live: dict[str, dict[str, Any]],
        limit: int,
    ) -> tuple[list[HostState], bool]:
        """Host states, and whether they are every candidate there is (not a sample).

        A fresh answer already counts this request's earlier claims as used."""
        answer = await self._placement.candidates(request, limit)
        complete = not limit or len(answer.allocation_requests) < limit
        return host_states(answer, live), complete

    async def _place(
        self, placing: Placing, hosts: list[HostState]
    ) -> tuple[Selection | None, Tally]:
        tally = Tally(candidates=len(hosts))
        survivors = hosts
        for host_filter in FILTERS:
            kept = [h for h in survivors if host_filter.passes(h, placing)]
            if len(kept) < len(survivors):
                tally.removed[host_filter.name] += len(survivors) - len(kept)
            survivors = kept
            if not survivors:
                return None, tally
        ranked = weigh(survivors, placing, self._config)
        # A random pick among the best few, so replicas deciding at the same
        # moment rarely race for one host; then the rest in rank order.
        best = ranked[: self._config.host_subset_size]
        first = self._rng.choice(best)
        ranked.remove(first)
        ranked.insert(0, first)
        for position, host in enumerate(ranked):
            try:
                await self._placement.claim(placing.instance_id, placing.request, host.allocations)
            except ClaimLost as lost:
                existing = await self._placement.allocations_of(placing.instance_id)
                if existing:  # a retried request: the instance holds its claim already
                    return await self._already_placed(placing, existing, ranked), tally
                log.info("claim on %s lost (%s); trying the next host", host.host, lost.reason)
                tally.lost_claims += 1
                continue
            host.take(placing.request.resources)
            alternates = ranked[position + 1 : position + 1 + self._config.max_alternates]
            return Selection(
                placing.instance_id, _destination(host), tuple(map(_destination, alternates))
            ), tally
        return None, tally

    async def _already_placed(
        self, placing: Placing, existing: dict[str, dict[str, int]], ranked: list[HostState]
    ) -> Selection:
        root = await self._placement.root_of(next(iter(existing)))
        live = self._live_by_provider().get(root, {})
        destination = Destination(live.get("host", ""), live.get("address", ""), root, existing)
        alternates = [h for h in ranked if h.provider_uuid != root][: self._config.max_alternates]
        return Selection(placing.instance_id, destination, tuple(map(_destination, alternates)))


def _destination(host: HostState) -> Destination:
    return Destination(host.host, host.address, host.provider_uuid, host.allocations)
