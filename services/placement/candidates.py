"""Allocation candidates: which providers can hold a request, ready to claim.

Two steps, cheap first:
  1. SQL picks trees (by root) that can plausibly serve the request: for
     every requested class some provider of the tree has room; granular
     groups need one provider with all of their classes and traits. Roots are
     scanned in windows of provider ids (from a random start when asked, so
     concurrent schedulers see different hosts), so a query with a limit
     costs about `limit` index probes, not one per provider.
  2. Python builds the exact allocation requests per tree. A tree of one
     provider needs no search (step 1 was exact for it); a nested tree is
     searched combination by combination, bounded by MAX_PER_TREE results
     and MAX_EXAMINED combinations, so deep trees cannot explode.

Semantics (OpenStack Placement's, for the common cases):
  * unnamed group: each class may come from any provider of one tree; the
    providers used must together have the required traits, and none of them
    a forbidden one; member_of applies to the tree's root. With no resources
    of its own, its traits apply to the root.
  * granular group: all of its resources from one provider, which has its
    required traits, none of its forbidden ones, and is in one of its
    member_of aggregates. GROUP_POLICY_ISOLATE puts groups on different providers.
  * amounts that land on one provider add up and must fit together.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from itertools import product

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from services.common.db import Database, in_ids
from services.common.errors import InvalidArgument
from services.placement.catalog import check_known
from services.placement.models import (
    InventoryRow,
    ProviderAggregateRow,
    ProviderRow,
    ProviderTraitRow,
)
from services.placement.providers import not_found
from services.placement.resources import Inventory, fits

MAX_PER_TREE = 16
MAX_EXAMINED = 2000
# Without a limit, trees are still read in batches to bound memory per query.
UNLIMITED_BATCH = 5000


@dataclass(frozen=True)
class Group:
    resources: dict[str, int]
    required: frozenset[str] = frozenset()
    forbidden: frozenset[str] = frozenset()
    member_of: frozenset[str] = frozenset()
    suffix: str = ""  # empty for the unnamed group


@dataclass(frozen=True)
class CandidateQuery:
    unnamed: Group
    groups: tuple[Group, ...] = ()
    isolate: bool = False
    in_tree: str = ""
    limit: int = 0
    randomize: bool = False


@dataclass
class ProviderInfo:
    id: int
    uuid: str
    name: str
    parent_id: int | None
    root_id: int
    inventories: dict[str, Inventory] = field(default_factory=dict)
    traits: set[str] = field(default_factory=set)
    aggregates: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Candidates:
    # Each request: provider uuid -> resource class -> amount.
    requests: list[dict[str, dict[str, int]]]
    providers: list[ProviderInfo]


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


def _root_query(query: CandidateQuery):
    """SELECT root ids of trees that pass step 1, and the root alias to page on."""
    root = aliased(ProviderRow, name="root")
    sql = select(root.id).where(root.id == root.root_id)
    unnamed = query.unnamed
    if unnamed.member_of:
        sql = sql.where(
            exists().where(
                ProviderAggregateRow.provider_id == root.id,
                ProviderAggregateRow.aggregate_uuid.in_(unnamed.member_of),
            )
        )
    if not unnamed.resources:
        # Traits of a resource-less unnamed group apply to the root.
        for trait in unnamed.required:
            sql = sql.where(
                exists().where(
                    ProviderTraitRow.provider_id == root.id, ProviderTraitRow.trait == trait
                )
            )
        if unnamed.forbidden:
            sql = sql.where(
                ~exists().where(
                    ProviderTraitRow.provider_id == root.id,
                    ProviderTraitRow.trait.in_(unnamed.forbidden),
                )
            )
    for resource_class, amount in unnamed.resources.items():
        provider, inventory = aliased(ProviderRow), aliased(InventoryRow)
        source = (
            select(provider.id)
            .join(inventory, inventory.provider_id == provider.id)
            .where(
                provider.root_id == root.id,
                inventory.resource_class == resource_class,
                fits(inventory, amount),
            )
        )
        if unnamed.forbidden:
            trait = aliased(ProviderTraitRow)
            source = source.where(
                ~exists().where(
                    trait.provider_id == provider.id, trait.trait.in_(unnamed.forbidden)
                )
            )
        sql = sql.where(source.exists())
    if unnamed.resources:
        for required in unnamed.required:
            provider, trait = aliased(ProviderRow), aliased(ProviderTraitRow)
            sql = sql.where(
                select(provider.id)
                .join(trait, trait.provider_id == provider.id)
                .where(provider.root_id == root.id, trait.trait == required)
                .exists()
            )
    for group in query.groups:
        provider = aliased(ProviderRow)
        source = select(provider.id).where(provider.root_id == root.id)
        for resource_class, amount in group.resources.items():
            inventory = aliased(InventoryRow)
            source = source.where(
                exists().where(
                    inventory.provider_id == provider.id,
                    inventory.resource_class == resource_class,
                    fits(inventory, amount),
                )
            )
        for required in group.required:
            trait = aliased(ProviderTraitRow)
            source = source.where(
                exists().where(trait.provider_id == provider.id, trait.trait == required)
            )
        if group.forbidden:
            trait = aliased(ProviderTraitRow)
            source = source.where(
                ~exists().where(trait.provider_id == provider.id, trait.trait.in_(group.forbidden))
            )
        if group.member_of:
            aggregate = aliased(ProviderAggregateRow)
            source = source.where(
                exists().where(
                    aggregate.provider_id == provider.id,
                    aggregate.aggregate_uuid.in_(group.member_of),
                )
            )
        sql = sql.where(source.exists())
    return sql, root


async def _root_batches(
    conn: AsyncConnection, query: CandidateQuery, in_tree_root: int | None, window: int
) -> AsyncIterator[list[int]]:
    """Root ids passing step 1, one window of provider ids at a time.

    Windows, not ORDER BY ... LIMIT: PostgreSQL underestimates how many roots
    pass the EXISTS filters and then scans and sorts them all (55 ms at 10k
    providers); an id range is an index range scan on every database, so
    the work stays proportional to the trees actually looked at.
    """
    sql, root = _root_query(query)
    if in_tree_root is not None:
        ids = list(await conn.scalars(sql.where(root.id == in_tree_root)))
        if ids:
            yield ids
        return
    low, high = (
        await conn.execute(select(func.min(ProviderRow.id), func.max(ProviderRow.id)))
    ).one()
    if low is None:
        return
    # A random start spreads concurrent schedulers over different hosts.
    start = random.randint(low, high) if query.randomize else low
    for first, last in ((start, high), (low, start - 1)):
        for lo in range(first, last + 1, window):
            hi = min(lo + window - 1, last)
            ids = list(await conn.scalars(sql.where(root.id.between(lo, hi)).order_by(root.id)))
            if ids:
                yield ids


async def _load_trees(conn: AsyncConnection, root_ids: list[int]) -> dict[int, list[ProviderInfo]]:
    in_trees = in_ids(conn, ProviderRow.root_id, root_ids)
    infos = {
        row.id: ProviderInfo(row.id, row.uuid, row.name, row.parent_id, row.root_id)
        for row in await conn.execute(
            select(
                ProviderRow.id,
                ProviderRow.uuid,
                ProviderRow.name,
                ProviderRow.parent_id,
                ProviderRow.root_id,
            ).where(in_trees)
        )
    }
    inventory_rows = await conn.execute(
        select(
            InventoryRow.provider_id,
            InventoryRow.resource_class,
            InventoryRow.total,
            InventoryRow.reserved,
            InventoryRow.min_unit,
            InventoryRow.max_unit,
            InventoryRow.step_size,
            InventoryRow.allocation_ratio,
            InventoryRow.used,
        )
        .join(ProviderRow, ProviderRow.id == InventoryRow.provider_id)
        .where(in_trees)
    )
    for provider_id, *values in inventory_rows:
        infos[provider_id].inventories[values[0]] = Inventory(*values)
    for provider_id, trait in await conn.execute(
        select(ProviderTraitRow.provider_id, ProviderTraitRow.trait)
        .join(ProviderRow, ProviderRow.id == ProviderTraitRow.provider_id)
        .where(in_trees)
    ):
        infos[provider_id].traits.add(trait)
    for provider_id, aggregate in await conn.execute(
        select(ProviderAggregateRow.provider_id, ProviderAggregateRow.aggregate_uuid)
        .join(ProviderRow, ProviderRow.id == ProviderAggregateRow.provider_id)
        .where(in_trees)
    ):
        infos[provider_id].aggregates.add(aggregate)
    trees: dict[int, list[ProviderInfo]] = defaultdict(list)
    for info in infos.values():
        trees[info.root_id].append(info)
    return trees


def _group_fits(provider: ProviderInfo, group: Group) -> bool:
    return (
        all(
            rc in provider.inventories and provider.inventories[rc].fits(n)
            for rc, n in group.resources.items()
        )
        and group.required <= provider.traits
        and not (group.forbidden & provider.traits)
        and (not group.member_of or bool(group.member_of & provider.aggregates))
    )


def tree_requests(
    tree: list[ProviderInfo], query: CandidateQuery
) -> list[dict[int, dict[str, int]]]:
    """Exact allocation requests one tree can satisfy (provider id -> class -> amount)."""
    unnamed = query.unnamed
    if len(tree) == 1 and not query.groups and unnamed.resources:
        return [{tree[0].id: dict(unnamed.resources)}]  # step 1 was exact for a lone provider
    per_class = []
    for resource_class, amount in unnamed.resources.items():
        options = [
            p
            for p in tree
            if resource_class in p.inventories
            and p.inventories[resource_class].fits(amount)
            and not (p.traits & unnamed.forbidden)
        ]
        if not options:
            return []
        per_class.append(options)
    per_group = []
    for group in query.groups:
        options = [p for p in tree if _group_fits(p, group)]
        if not options:
            return []
        per_group.append(options)

    found: list[dict[int, dict[str, int]]] = []
    seen: set[frozenset] = set()
    examined = 0
    classes = list(unnamed.resources.items())
    for unnamed_choice in product(*per_class):
        used_traits = set().union(*(p.traits for p in unnamed_choice))
        if unnamed.resources and not unnamed.required <= used_traits:
            continue
        for group_choice in product(*per_group):
            examined += 1
            if examined > MAX_EXAMINED:
                return found
            if query.isolate and len({p.id for p in group_choice}) < len(group_choice):
                continue
            merged: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            by_id = {}
            for (resource_class, amount), provider in zip(classes, unnamed_choice, strict=True):
                merged[provider.id][resource_class] += amount
                by_id[provider.id] = provider
            for group, provider in zip(query.groups, group_choice, strict=True):
                for resource_class, amount in group.resources.items():
                    merged[provider.id][resource_class] += amount
                by_id[provider.id] = provider
            if not all(
                by_id[pid].inventories[rc].fits(n)
                for pid, amounts in merged.items()
                for rc, n in amounts.items()
            ):
                continue
            key = frozenset(
                (pid, rc, n) for pid, amounts in merged.items() for rc, n in amounts.items()
            )
            if key in seen:
                continue
            seen.add(key)
            found.append({pid: dict(amounts) for pid, amounts in merged.items()})
            if len(found) >= MAX_PER_TREE:
                return found
    return found


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
            async for root_ids in _root_batches(conn, query, in_tree_root, batch):
                trees = await _load_trees(conn, root_ids)
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
