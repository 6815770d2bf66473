"""select_destinations: the scheduler's algorithm, top to bottom.

A call brings one request (SelectDestinations) or several independent ones
(BatchSelectDestinations). Requests asking for the same resources share one
candidates answer from placement (it already checked room and traits). For
each instance: drop the hosts a filter refuses, weigh the rest, pick at
random among the best few, and count the pick against the host, so the next
instance sees it taken. Then every pick is claimed in placement together
(BatchPutAllocations, one transaction per 100); a batch that placement
refuses falls back to one claim per instance, each moving to its next host
if it lost a race. Every step counts what it removed, so "no valid host"
can say why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from typing import Any

from services.common.config import SchedulerSection
from services.common.errors import NoValidHost, StratusError
from services.common.liveness import HostLiveness
from services.scheduler.decision import (
    Destination,
    Pick,
    Pool,
    Selection,
    Tally,
    pool_key,
)
from services.scheduler.filters import FILTERS
from services.scheduler.host_state import HostState, host_states
from services.scheduler.placement import MAX_BATCH_CLAIMS, Claim, ClaimLost, PlacementClient
from services.scheduler.ranking import PoolRanking
from services.scheduler.request import Placing, SchedulingRequest
from services.scheduler.server_groups import ServerGroups
from services.scheduler.weighers import weigh

log = logging.getLogger(__name__)

# What one request of a batch ends with: its selections, or why it failed.
Outcome = list[Selection] | StratusError


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
        [outcome] = await self.select_many([request])
        if isinstance(outcome, StratusError):
            raise outcome
        return outcome

    async def select_many(self, requests: list[SchedulingRequest]) -> list[Outcome]:
        """Each request's selections or error, in order. Requests without a
        server group are decided together; each group's under its own lock."""
        outcomes: list[Outcome | None] = [None] * len(requests)
        free = [i for i, r in enumerate(requests) if r.server_group is None]

        async def together() -> None:
            decided = await self._select([requests[i] for i in free], [set() for _ in free])
            for i, outcome in zip(free, decided, strict=True):
                outcomes[i] = outcome

        async def in_group(i: int) -> None:
            outcomes[i] = await self._select_in_group(requests[i])

        grouped = [in_group(i) for i, r in enumerate(requests) if r.server_group is not None]
        await asyncio.gather(*([together()] if free else []), *grouped)
        return outcomes  # type: ignore[return-value]  # every slot is filled above

    async def _select_in_group(self, request: SchedulingRequest) -> Outcome:
        group = request.server_group
        assert group is not None
        # Members of one group are placed one decision at a time, across replicas:
        # hard anti-affinity must hold even when two members arrive together.
        try:
            async with self._groups.locked(group.id):
                providers = await self._groups.member_providers(group.id, request.instance_ids)
                # Recorded before any claim: a crash after a claim never hides a member.
                await self._groups.record(group.id, request.instance_ids)
                outcome: Outcome | None = None
                try:
                    [outcome] = await self._select([request], [providers])
                finally:
                    if not isinstance(outcome, list):  # failed or cut short: no members
                        with contextlib.suppress(Exception):
                            await self._groups.forget(group.id, request.instance_ids)
                return outcome
        except StratusError as exc:  # the lock or etcd: this request fails alone
            return exc

    async def _select(
        self, requests: list[SchedulingRequest], group_providers: list[set[str]]
    ) -> list[Outcome]:
        live = self._liveness.by_provider()
        pools: dict[tuple, Pool] = {}
        for request in requests:
            pools.setdefault(pool_key(request), Pool(request)).instances += len(
                request.instance_ids
            )
        await asyncio.gather(*(self._sample(pool, live) for pool in pools.values()))
        outcomes: list[Outcome | None] = [None] * len(requests)
        decided: list[tuple[int, list[Pick]]] = []
        pending: list[Pick] = []  # every pick so far, to count again on a fresh answer
        for index, request in enumerate(requests):
            pool = pools[pool_key(request)]
            try:
                if pool.error:
                    raise pool.error
                picks = await self._decide(request, group_providers[index], pool, live, pending)
            except StratusError as exc:
                outcomes[index] = exc
                continue
            decided.append((index, picks))
            pending += picks
        for index, outcome in await self._claim(decided, pools):
            outcomes[index] = outcome
        return outcomes  # type: ignore[return-value]  # every slot is filled above

    async def _sample(self, pool: Pool, live: Mapping[str, dict[str, Any]]) -> None:
        # A random sample first: at 10,000 hosts reading and weighing all of them buys
        # no better choice than the best of a few dozen (see bench/scheduler.py).
        limit = max(self._config.candidate_sample_size, 2 * pool.instances)
        try:
            pool.hosts, pool.complete = await self._candidates(pool.request, live, limit)
        except StratusError as exc:
            pool.error = exc

    async def _decide(
        self,
        request: SchedulingRequest,
        group_providers: set[str],
        pool: Pool,
        live: Mapping[str, dict[str, Any]],
        pending: list[Pick],
    ) -> list[Pick]:
        """A host for every instance of the request, or NoValidHost (and none taken)."""
        picks: list[Pick] = []
        try:
            for instance_id in request.instance_ids:
                placing = Placing(request, instance_id, group_providers)
                ranked, tally, taken_out = self._ranked(placing, pool)
                if not ranked and not pool.complete:
                    # The sample left too few: read every candidate before saying no.
                    await self._read_all(pool, live, pending + picks)
                    ranked, tally = self._rank(placing, pool.hosts)
                if not ranked:
                    raise NoValidHost(tally.explain(request, instance_id))
                ranked[0].take(request.resources)
                if pool.ranking is not None and taken_out:
                    pool.ranking.restore(taken_out, placing)
                group_providers.add(ranked[0].provider_uuid)
                picks.append(Pick(placing, ranked))
        except StratusError:
            for pick in picks:
                pick.host.give_back(request.resources)
            pool.ranking = None  # weighed with what they had taken: weigh again
            raise
        return picks

    def _ranked(
        self, placing: Placing, pool: Pool
    ) -> tuple[list[HostState], Tally, list[HostState]]:
        """The instance's hosts, chosen first, and those taken out of the pool's
        ranking (to go back once the choice is counted)."""
        if placing.request.server_group is None:
            if pool.ranking is None:
                pool.ranking = PoolRanking(pool.hosts, placing, self._config)
            wanted = self._config.host_subset_size + self._config.max_alternates
            best = pool.ranking.best(placing, wanted, self._config.candidate_sample_size)
            if best:
                return self._random_first(list(best)), Tally(candidates=len(pool.hosts)), best
        return (*self._rank_window(placing, pool.hosts), [])

    async def _read_all(
        self, pool: Pool, live: Mapping[str, dict[str, Any]], picks: list[Pick]
    ) -> None:
        """Every candidate, with the picks not yet claimed counted against their hosts."""
        pool.hosts, pool.complete = await self._candidates(pool.request, live, 0)
        pool.ranking = None
        fresh = {h.provider_uuid: h for h in pool.hosts}
        for pick in picks:
            host = fresh.get(pick.host.provider_uuid)
            if host is not None and pool_key(pick.placing.request) == pool_key(pool.request):
                host.take(pick.placing.request.resources)
                pick.ranked[0] = host

    async def _claim(
        self, decided: list[tuple[int, list[Pick]]], pools: dict[tuple, Pool]
    ) -> list[tuple[int, Outcome]]:
        """Claim every pick, a batch at a time; the picks of a refused batch one by one.

        All or nothing per request: one whose instance finds no host keeps none."""
        picks = [pick for _, request_picks in decided for pick in request_picks]
        refused: set[str] = set()  # instance ids
        outcomes: list[tuple[int, Outcome]] = []
        try:
            for start in range(0, len(picks), MAX_BATCH_CLAIMS):
                batch = picks[start : start + MAX_BATCH_CLAIMS]
                try:
                    await self._placement.claim_all([_claim_of(p) for p in batch])
                except ClaimLost as lost:
                    log.info("a batch of %d claims was refused (%s)", len(batch), lost.reason)
                    refused.update(p.placing.instance_id for p in batch)
            for index, request_picks in decided:
                outcomes.append((index, await self._settle(request_picks, refused, pools)))
        except BaseException:
            # Nobody will hear of these claims: give them back (releasing one
            # that was never made is harmless).
            await self._release(picks)
            raise
        return outcomes

    async def _settle(
        self, picks: list[Pick], refused: set[str], pools: dict[tuple, Pool]
    ) -> Outcome:
        """One request's selections: the picks claimed in a batch, and the refused
        ones claimed one by one, each on its next host if it lost a race."""
        selections: list[Selection] = []
        try:
            for pick in picks:
                placing = pick.placing
                if placing.instance_id not in refused:
                    selections.append(self._selection(placing.instance_id, pick.ranked))
                    continue
                # Its own host first (the filters chose it); if that claim is lost,
                # the others again through the filters, as later picks took hosts too.
                tally = Tally(candidates=len(pick.ranked))
                selection = await self._claim_in_order(placing, pick.ranked[:1], tally)
                if selection is None:
                    selection, tally = await self._place(placing, pick.ranked[1:])
                if selection is None:
                    raise NoValidHost(tally.explain(placing.request, placing.instance_id))
                selections.append(selection)
        except BaseException as exc:
            # All or nothing: a multi-create that cannot place every instance keeps none.
            await self._release(picks)
            if isinstance(exc, StratusError):
                return exc
            raise
        return selections

    async def _release(self, picks: list[Pick]) -> None:
        for pick in picks:
            with contextlib.suppress(Exception):
                await self._placement.release(pick.placing.instance_id)

    def _selection(self, instance_id: str, ranked: list[HostState]) -> Selection:
        alternates = ranked[1 : 1 + self._config.max_alternates]
        return Selection(instance_id, _destination(ranked[0]), tuple(map(_destination, alternates)))

    async def _candidates(
        self,
        request: SchedulingRequest,
        live: Mapping[str, dict[str, Any]],
        limit: int,
    ) -> tuple[list[HostState], bool]:
        """Host states, and whether they are every candidate there is (not a sample).

        A fresh answer already counts the claims made so far as used."""
        answer = await self._placement.candidates(request, limit)
        complete = not limit or len(answer.allocation_requests) < limit
        return host_states(answer, live), complete

    def _rank_window(
        self, placing: Placing, hosts: list[HostState]
    ) -> tuple[list[HostState], Tally]:
        """_rank over a random window of the pool, or the whole pool if the window
        keeps no host. A batch of B instances shares a pool of 2B hosts or more:
        ranking all of it for each instance cost B x 2B checks (4 s of CPU for a
        batch of 200 here), for no better choice than the best of a few dozen."""
        size = self._config.candidate_sample_size
        if len(hosts) > size:
            ranked, tally = self._rank(placing, self._rng.sample(hosts, size))
            if ranked:
                return ranked, tally
        return self._rank(placing, hosts)

    def _rank(self, placing: Placing, hosts: list[HostState]) -> tuple[list[HostState], Tally]:
        """The hosts the filters keep, the chosen one first, then the rest in rank order."""
        tally = Tally(candidates=len(hosts))
        survivors = hosts
        for host_filter in FILTERS:
            kept = [h for h in survivors if host_filter.passes(h, placing)]
            if len(kept) < len(survivors):
                tally.removed[host_filter.name] += len(survivors) - len(kept)
            survivors = kept
            if not survivors:
                return [], tally
        return self._random_first(weigh(survivors, placing, self._config)), tally

    def _random_first(self, ranked: list[HostState]) -> list[HostState]:
        """A random pick among the best few first, so replicas deciding at the same
        moment rarely race for one host; then the rest in rank order."""
        first = self._rng.choice(ranked[: self._config.host_subset_size])
        ranked.remove(first)
        ranked.insert(0, first)
        return ranked

    async def _place(
        self, placing: Placing, hosts: list[HostState]
    ) -> tuple[Selection | None, Tally]:
        """Rank the hosts and claim one after another until a claim holds."""
        ranked, tally = self._rank(placing, hosts)
        return await self._claim_in_order(placing, ranked, tally), tally

    async def _claim_in_order(
        self, placing: Placing, ranked: list[HostState], tally: Tally
    ) -> Selection | None:
        for position, host in enumerate(ranked):
            try:
                await self._placement.claim(placing.instance_id, placing.request, host.allocations)
            except ClaimLost as lost:
                existing = await self._placement.allocations_of(placing.instance_id)
                if existing:  # a retried request: the instance holds its claim already
                    return await self._already_placed(placing, existing, ranked)
                log.info("claim on %s lost (%s); trying the next host", host.host, lost.reason)
                tally.lost_claims += 1
                continue
            host.take(placing.request.resources)
            placing.group_providers.add(host.provider_uuid)
            return self._selection(placing.instance_id, ranked[position:])
        return None

    async def _already_placed(
        self, placing: Placing, existing: dict[str, dict[str, int]], ranked: list[HostState]
    ) -> Selection:
        root = await self._placement.root_of(next(iter(existing)))
        live = self._liveness.by_provider().get(root, {})
        destination = Destination(live.get("host", ""), live.get("address", ""), root, existing)
        alternates = [h for h in ranked if h.provider_uuid != root][: self._config.max_alternates]
        return Selection(placing.instance_id, destination, tuple(map(_destination, alternates)))


def _claim_of(pick: Pick) -> Claim:
    return Claim(pick.placing.instance_id, pick.placing.request, pick.host.allocations)


def _destination(host: HostState) -> Destination:
    return Destination(host.host, host.address, host.provider_uuid, host.allocations)
