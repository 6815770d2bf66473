"""Step 1: which trees can plausibly serve a request (SQL), and loading them."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import AsyncIterator

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from services.common.db import in_ids
from services.placement.candidates.request import CandidateQuery, ProviderInfo
from services.placement.models import (
    InventoryRow,
    ProviderAggregateRow,
    ProviderRow,
    ProviderTraitRow,
)
from services.placement.resources import Inventory, fits


def root_query(query: CandidateQuery):
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


async def root_batches(
    conn: AsyncConnection, query: CandidateQuery, in_tree_root: int | None, window: int
) -> AsyncIterator[list[int]]:
    """Root ids passing step 1, one window of provider ids at a time.

    Windows, not ORDER BY ... LIMIT: PostgreSQL underestimates how many roots
    pass the EXISTS filters and then scans and sorts them all (55 ms at 10k
    providers); an id range is an index range scan on every database, so
    the work stays proportional to the trees actually looked at.
    """
    sql, root = root_query(query)
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


async def load_trees(conn: AsyncConnection, root_ids: list[int]) -> dict[int, list[ProviderInfo]]:
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
