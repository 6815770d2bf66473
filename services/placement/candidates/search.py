"""The search: check the request, then walk the index's trees until the limit.

It reads the replica's capacity index (capacity_index/), not the database:
no query unless the request names a non-standard class or trait (which must
exist) or an `in_tree` provider this replica has not seen yet. The walk is
synchronous, so it sees one state of the index from start to end.
"""

from __future__ import annotations

import random

from services.common.db import Database
from services.common.errors import InvalidArgument
from services.placement.candidates.combinations import tree_requests
from services.placement.candidates.request import CandidateQuery, Candidates
from services.placement.candidates.trees import may_serve
from services.placement.capacity_index.refresh import CapacityIndex
from services.placement.capacity_index.state import ProviderIndex, ProviderNode
from services.placement.catalog import STANDARD_CLASSES, STANDARD_TRAITS, check_known


def _check(query: CandidateQuery) -> None:
    if not query.unnamed.resources and not any(g.resources for g in query.groups):
        raise InvalidArgument("ask for at least one resource", code="placement.empty_request")
    suffixes = [g.suffix for g in query.groups]
    if len(set(suffixes)) != len(suffixes):
        raise InvalidArgument("group suffixes must be unique", code="placement.duplicate_group")
    for group in (query.unnamed, *query.groups):
        both = group.required & group.forbidden
        if both:
            raise InvalidArgument(
                f"group {group.suffix or '(unnamed)'}: {', '.join(sorted(both))} "
                "both required and forbidden",
                code="placement.conflicting_traits",
            )


def _walk(index: ProviderIndex, query: CandidateQuery, roots) -> Candidates:
    """Trees in order until `limit` requests (all of them without a limit).

    Bounded work: with a limit, about `limit` trees are looked at when most
    fit; each nested tree is searched within combinations.MAX_EXAMINED.
    """
    requests: list[dict[int, dict[str, int]]] = []
    summarized: list[ProviderNode] = []
    flat_request = dict(query.unnamed.resources) if not query.groups else None
    for root_id in roots:
        tree = index.tree(root_id)
        root = index.node(root_id)
        if root is None or not may_serve(tree, root, query):
            continue
        if len(tree) == 1 and flat_request:
            requests.append({root_id: flat_request})  # step 1 was exact for a flat host
        else:
            found = tree_requests(tree, query)
            if not found:
                continue
            requests += found
        summarized += tree
        if query.limit and len(requests) >= query.limit:
            return Candidates(requests[: query.limit], summarized)
    return Candidates(requests, summarized)


class AllocationCandidates:
    def __init__(self, db: Database, index: CapacityIndex) -> None:
        self._db = db
        self._index = index

    async def find(self, query: CandidateQuery) -> Candidates:
        _check(query)
        groups = (query.unnamed, *query.groups)
        classes = {rc for g in groups for rc in g.resources}
        traits = {t for g in groups for t in g.required | g.forbidden}
        if not (classes <= STANDARD_CLASSES and traits <= STANDARD_TRAITS):
            async with self._db.read() as conn:
                await check_known(conn, classes, traits, "resources")
        state = self._index.state
        if query.in_tree:
            roots = [await self._index.root_of(query.in_tree)]
        else:
            # A random start spreads concurrent schedulers over different hosts.
            start = random.randrange(state.root_count() or 1) if query.randomize else 0
            roots = state.roots(start)
        return _walk(state, query, roots)
