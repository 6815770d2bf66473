"""Reading providers from the database into index nodes."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.db import in_ids
from services.placement.capacity_index.state import BUCKET_IDS, Digest, ProviderNode, Version
from services.placement.models import (
    InventoryRow,
    ProviderAggregateRow,
    ProviderRow,
    ProviderTraitRow,
)
from services.placement.resources import Inventory

# Ids per query when reloading some providers: bounds the statement size.
CHUNK = 5000
# Id ranges (digest buckets) per query when reading versions, for the same reason.
RANGES_PER_QUERY = 100

_INVENTORY_COLUMNS = (
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


async def read_digests(conn: AsyncConnection) -> dict[int, Digest]:
    """Bucket -> digest (state.py) of the providers in the database.

    One GROUP BY that returns a row per BUCKET_IDS providers: the database
    scans the table, but nothing per provider crosses into Python.
    """
    bucket = (ProviderRow.id // BUCKET_IDS).label("bucket")
    rows = await conn.execute(
        select(
            bucket,
            func.count(),
            func.sum(ProviderRow.id),
            func.sum(ProviderRow.generation),
            func.sum(ProviderRow.root_id),
            func.sum(func.coalesce(ProviderRow.parent_id, 0)),
        ).group_by(bucket)
    )
    return {row[0]: tuple(int(value) for value in row[1:]) for row in rows}


async def read_versions(conn: AsyncConnection, buckets: list[int]) -> dict[int, Version]:
    """Provider id -> (generation, root id, parent id) for every provider in these buckets."""
    ranges = [
        ProviderRow.id.between(bucket * BUCKET_IDS, (bucket + 1) * BUCKET_IDS - 1)
        for bucket in buckets
    ]
    versions: dict[int, Version] = {}
    for start in range(0, len(ranges), RANGES_PER_QUERY):
        rows = await conn.execute(
            select(
                ProviderRow.id, ProviderRow.generation, ProviderRow.root_id, ProviderRow.parent_id
            ).where(or_(*ranges[start : start + RANGES_PER_QUERY]))
        )
        versions.update((row[0], (row[1], row[2], row[3])) for row in rows)
    return versions


async def read_nodes(conn: AsyncConnection, ids: list[int] | None = None) -> list[ProviderNode]:
    """Every provider (ids None) or the listed ones, whole.

    The provider row is read before its inventories, traits and aggregates:
    under READ COMMITTED those may be newer than its generation says, never
    older, and a node that is newer than its generation is only read again.
    """
    if ids is None:
        return await _read(conn, None)
    nodes: list[ProviderNode] = []
    for start in range(0, len(ids), CHUNK):
        nodes += await _read(conn, ids[start : start + CHUNK])
    return nodes


async def _read(conn: AsyncConnection, ids: list[int] | None) -> list[ProviderNode]:
    def where(query, column):
        return query if ids is None else query.where(in_ids(conn, column, ids))

    providers = (
        await conn.execute(
            where(
                select(
                    ProviderRow.id,
                    ProviderRow.uuid,
                    ProviderRow.name,
                    ProviderRow.generation,
                    ProviderRow.parent_id,
                    ProviderRow.root_id,
                ),
                ProviderRow.id,
            )
        )
    ).all()
    inventories: dict[int, dict[str, Inventory]] = defaultdict(dict)
    for provider_id, *values in await conn.execute(
        where(select(*_INVENTORY_COLUMNS), InventoryRow.provider_id)
    ):
        inventories[provider_id][values[0]] = Inventory(*values)
    traits: dict[int, set[str]] = defaultdict(set)
    for provider_id, trait in await conn.execute(
        where(
            select(ProviderTraitRow.provider_id, ProviderTraitRow.trait),
            ProviderTraitRow.provider_id,
        )
    ):
        traits[provider_id].add(trait)
    aggregates: dict[int, set[str]] = defaultdict(set)
    for provider_id, aggregate in await conn.execute(
        where(
            select(ProviderAggregateRow.provider_id, ProviderAggregateRow.aggregate_uuid),
            ProviderAggregateRow.provider_id,
        )
    ):
        aggregates[provider_id].add(aggregate)
    return [
        ProviderNode(
            id=row.id,
            uuid=row.uuid,
            name=row.name,
            generation=row.generation,
            parent_id=row.parent_id,
            root_id=row.root_id,
            inventories=inventories.get(row.id, {}),
            traits=frozenset(traits.get(row.id, ())),
            aggregates=frozenset(aggregates.get(row.id, ())),
        )
        for row in providers
    ]
