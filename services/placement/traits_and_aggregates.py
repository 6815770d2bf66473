"""A provider's traits and aggregates (sets it is replaced whole), its usages
and the allocations held on it."""

from __future__ import annotations

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.db import Database
from services.common.errors import FieldViolation, InvalidArgument
from services.placement.capacity_index.refresh import CapacityIndex
from services.placement.catalog import ensure_traits
from services.placement.models import (
    AllocationRow,
    InventoryRow,
    ProviderAggregateRow,
    ProviderTraitRow,
)
from services.placement.providers import (
    Provider,
    bump_generation,
    load_provider,
    read_provider,
)

_traits = ProviderTraitRow.__table__
_aggregates = ProviderAggregateRow.__table__


async def _members(conn: AsyncConnection, table, column: str, provider_id: int) -> list[str]:
    rows = await conn.scalars(
        select(table.c[column]).where(table.c.provider_id == provider_id).order_by(table.c[column])
    )
    return list(rows)


def _unique(values: list[str], field: str) -> list[str]:
    if len(set(values)) != len(values):
        raise InvalidArgument(
            f"{field} lists a value twice",
            code="placement.duplicate_value",
            field_violations=(FieldViolation(field, "values must be unique"),),
        )
    return sorted(values)


class ProviderSets:
    """Traits and aggregates: read whole, replaced whole, generation-checked;
    this replica's capacity index takes them once committed."""

    def __init__(self, db: Database, index: CapacityIndex) -> None:
        self._db = db
        self._index = index

    async def get_traits(self, provider_uuid: str) -> tuple[Provider, list[str]]:
        async with self._db.read() as conn:
            provider = await load_provider(conn, provider_uuid)
            return provider, await _members(conn, _traits, "trait", provider.id)

    async def set_traits(
        self, provider_uuid: str, generation: int, traits: list[str]
    ) -> tuple[int, list[str]]:
        traits = _unique(traits, "traits")
        async with self._db.write() as conn:
            provider = await load_provider(conn, provider_uuid)
            await ensure_traits(conn, traits, "traits")
            new_generation = await bump_generation(conn, provider, generation)
            await self._replace(conn, _traits, "trait", provider.id, traits)
        self._index.state.change(provider.id, new_generation, traits=frozenset(traits))
        return new_generation, traits

    async def get_aggregates(self, provider_uuid: str) -> tuple[Provider, list[str]]:
        async with self._db.read() as conn:
            provider = await load_provider(conn, provider_uuid)
            return provider, await _members(conn, _aggregates, "aggregate_uuid", provider.id)

    async def set_aggregates(
        self, provider_uuid: str, generation: int, aggregates: list[str]
    ) -> tuple[int, list[str]]:
        aggregates = _unique(aggregates, "aggregates")
        async with self._db.write() as conn:
            provider = await load_provider(conn, provider_uuid)
            new_generation = await bump_generation(conn, provider, generation)
            await self._replace(conn, _aggregates, "aggregate_uuid", provider.id, aggregates)
        self._index.state.change(provider.id, new_generation, aggregates=frozenset(aggregates))
        return new_generation, aggregates

    @staticmethod
    async def _replace(
        conn: AsyncConnection, table, column: str, provider_id: int, values: list[str]
    ) -> None:
        await conn.execute(delete(table).where(table.c.provider_id == provider_id))
        if values:
            await conn.execute(
                insert(table), [{"provider_id": provider_id, column: v} for v in values]
            )

    async def usages(self, provider_uuid: str) -> tuple[Provider, dict[str, int]]:
        return await self._db.run_read(_usages, provider_uuid)

    async def allocations(self, provider_uuid: str) -> tuple[Provider, dict[str, dict[str, int]]]:
        return await self._db.run_read(_allocations, provider_uuid)


def _usages(conn: Connection, provider_uuid: str) -> tuple[Provider, dict[str, int]]:
    provider = read_provider(conn, provider_uuid)
    rows = conn.execute(
        select(InventoryRow.resource_class, InventoryRow.used).where(
            InventoryRow.provider_id == provider.id
        )
    )
    return provider, dict(rows.all())


def _allocations(
    conn: Connection, provider_uuid: str
) -> tuple[Provider, dict[str, dict[str, int]]]:
    """The provider, and what each consumer holds on it."""
    provider = read_provider(conn, provider_uuid)
    rows = conn.execute(
        select(AllocationRow.consumer_uuid, AllocationRow.resource_class, AllocationRow.used)
        .where(AllocationRow.provider_id == provider.id)
        .order_by(AllocationRow.consumer_uuid)
    )
    held: dict[str, dict[str, int]] = {}
    for consumer, resource_class, used in rows:
        held.setdefault(consumer, {})[resource_class] = used
    return provider, held
