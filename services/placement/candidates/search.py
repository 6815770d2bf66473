"""The search: check the request, then step 1 and step 2 until the limit."""

from __future__ import annotations

from sqlalchemy import select

from services.common.db import Database
from services.common.errors import InvalidArgument
from services.placement.candidates.combinations import tree_requests
from services.placement.candidates.request import CandidateQuery, Candidates, ProviderInfo
from services.placement.candidates.trees import load_trees, root_batches
from services.placement.catalog import check_known
from services.placement.models import ProviderRow
from services.placement.providers import not_found

# Without a limit, trees are still read in windows to bound memory per query.
UNLIMITED_BATCH = 5000


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


class AllocationCandidates:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def find(self, query: CandidateQuery) -> Candidates:
        _check(query)
        groups = (query.unnamed, *query.groups)
        requests: list[dict[str, dict[str, int]]] = []
        summarized: list[ProviderInfo] = []
        async with self._db.read() as conn:
            await check_known(
                conn,
                {rc for g in groups for rc in g.resources},
                {t for g in groups for t in g.required | g.forbidden},
                "resources",
            )
            in_tree_root = None
            if query.in_tree:
                in_tree_root = await conn.scalar(
                    select(ProviderRow.root_id).where(ProviderRow.uuid == query.in_tree)
                )
                if in_tree_root is None:
                    raise not_found(query.in_tree)
            batch = query.limit or UNLIMITED_BATCH
            async for root_ids in root_batches(conn, query, in_tree_root, batch):
                trees = await load_trees(conn, root_ids)
                for root_id in root_ids:
                    tree = trees[root_id]
                    found = tree_requests(tree, query)
                    if not found:
                        continue
                    uuids = {p.id: p.uuid for p in tree}
                    requests += [{uuids[pid]: amounts for pid, amounts in r.items()} for r in found]
                    summarized += tree
                    if query.limit and len(requests) >= query.limit:
                        return Candidates(requests[: query.limit], summarized)
        return Candidates(requests, summarized)
