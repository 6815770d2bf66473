"""Inventories: how much of each class a provider has, and the usage rules.

Every write checks and bumps the provider generation. Lowering an inventory
below what is allocated, or removing an allocated one, is refused: the
conditional UPDATE only matches while ``used`` still fits the new capacity.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import Select, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.db import Database
from services.common.errors import Conflict, FieldViolation, InvalidArgument, NotFound
from services.placement.capacity_index.refresh import CapacityIndex
from services.placement.catalog import ensure_classes
from services.placement.models import InventoryRow
from services.placement.providers import Provider, bump_generation, load_provider
from services.placement.resources import Inventory

inventories = InventoryRow.__table__
_COLUMNS = ("total", "reserved", "min_unit", "max_unit", "step_size", "allocation_ratio")


def with_defaults(inventory: Inventory, field: str) -> Inventory:
    """Fill unset (zero) fields with their defaults and check the rules between fields."""
    filled = replace(
        inventory,
        min_unit=inventory.min_unit or 1,
        max_unit=inventory.max_unit or inventory.total,
        step_size=inventory.step_size or 1,
        allocation_ratio=inventory.allocation_ratio or 1.0,
    )
    problems = []
    if filled.total < 1:
        problems.append(("total", "must be at least 1"))
    if not 0 <= filled.reserved <= filled.total:
        problems.append(("reserved", f"must be between 0 and total ({filled.total})"))
    if filled.max_unit < filled.min_unit:
        problems.append(("max_unit", f"must be at least min_unit ({filled.min_unit})"))
    if problems:
        raise InvalidArgument(
            "; ".join(f"{field}.{name}: {text}" for name, text in problems),
            code="placement.invalid_inventory",
            field_violations=tuple(FieldViolation(f"{field}.{n}", t) for n, t in problems),
        )
    return filled


def inventories_query(provider_id: int, resource_class: str | None = None) -> Select:
    """The provider's inventories (or only the one of `resource_class`), by
    class, as rows of Inventory's fields."""
    query = (
        select(
            inventories.c.resource_class, *(inventories.c[c] for c in _COLUMNS), inventories.c.used
        )
        .where(inventories.c.provider_id == provider_id)
        .order_by(inventories.c.resource_class)
    )
    if resource_class is not None:
        query = query.where(inventories.c.resource_class == resource_class)
    return query


async def read_inventories(conn: AsyncConnection, provider_id: int) -> list[Inventory]:
    return [Inventory(*row) for row in await conn.execute(inventories_query(provider_id))]


def _in_use(provider: Provider, inventory: Inventory, used: int) -> Conflict:
    return Conflict(
        f"{inventory.resource_class} on resource provider {provider.uuid} has {used} allocated; "
        f"its capacity cannot go below that (asked {inventory.capacity})",
        code="placement.inventory_in_use",
    )


class Inventories:
    """Inventory writes also update this replica's capacity index once committed."""

    def __init__(self, db: Database, index: CapacityIndex) -> None:
        self._db = db
        self._index = index

    def _committed(self, provider: Provider, generation: int, now: list[Inventory]):
        self._index.state.change(
            provider.id, generation, inventories={i.resource_class: i for i in now}
        )
        return generation, now

    async def get(self, provider_uuid: str) -> tuple[Provider, list[Inventory]]:
        async with self._db.read() as conn:
            provider = await load_provider(conn, provider_uuid)
            return provider, await read_inventories(conn, provider.id)

    async def replace_all(
        self, provider_uuid: str, generation: int, wanted: list[Inventory]
    ) -> tuple[int, list[Inventory]]:
        classes = [inv.resource_class for inv in wanted]
        if len(set(classes)) != len(classes):
            raise InvalidArgument(
                "each resource class may appear once", code="placement.invalid_inventory"
            )
        wanted = [with_defaults(inv, f"inventories[{i}]") for i, inv in enumerate(wanted)]
        async with self._db.write() as conn:
            provider = await load_provider(conn, provider_uuid)
            await ensure_classes(conn, classes, "inventories.resource_class")
            new_generation = await bump_generation(conn, provider, generation)
            current = {inv.resource_class: inv for inv in await read_inventories(conn, provider.id)}
            for gone in sorted(current.keys() - set(classes)):
                await self._remove(conn, provider, current[gone])
            added = [inv for inv in wanted if inv.resource_class not in current]
            for inventory in wanted:
                if inventory.resource_class in current:
                    await self._update(conn, provider, inventory)
            await self._insert(conn, provider, added)
            # A provider's first inventories (the usual case) are exactly what was
            # inserted; only a replacement has usage to read back.
            now = (
                await read_inventories(conn, provider.id)
                if current
                else sorted(added, key=lambda inv: inv.resource_class)
            )
        return self._committed(provider, new_generation, now)

    async def set_one(
        self, provider_uuid: str, generation: int, inventory: Inventory
    ) -> tuple[int, list[Inventory]]:
        inventory = with_defaults(inventory, "inventory")
        async with self._db.write() as conn:
            provider = await load_provider(conn, provider_uuid)
            await ensure_classes(conn, [inventory.resource_class], "inventory.resource_class")
            new_generation = await bump_generation(conn, provider, generation)
            exists = await conn.scalar(
                select(inventories.c.used).where(
                    inventories.c.provider_id == provider.id,
                    inventories.c.resource_class == inventory.resource_class,
                )
            )
            if exists is None:
                await self._insert(conn, provider, [inventory])
            else:
                await self._update(conn, provider, inventory)
            now = await read_inventories(conn, provider.id)
        return self._committed(provider, new_generation, now)

    async def delete_one(
        self, provider_uuid: str, generation: int, resource_class: str
    ) -> tuple[int, list[Inventory]]:
        async with self._db.write() as conn:
            provider = await load_provider(conn, provider_uuid)
            current = {inv.resource_class: inv for inv in await read_inventories(conn, provider.id)}
            if resource_class not in current:
                raise NotFound(
                    f"resource provider {provider_uuid} has no {resource_class} inventory",
                    code="placement.inventory_not_found",
                )
            new_generation = await bump_generation(conn, provider, generation)
            await self._remove(conn, provider, current[resource_class])
            now = await read_inventories(conn, provider.id)
        return self._committed(provider, new_generation, now)

    async def _remove(
        self, conn: AsyncConnection, provider: Provider, inventory: Inventory
    ) -> None:
        result = await conn.execute(
            delete(inventories).where(
                inventories.c.provider_id == provider.id,
                inventories.c.resource_class == inventory.resource_class,
                inventories.c.used == 0,
            )
        )
        if result.rowcount == 0:
            raise _in_use(provider, replace(inventory, total=0, reserved=0), inventory.used)

    async def _insert(
        self, conn: AsyncConnection, provider: Provider, added: list[Inventory]
    ) -> None:
        if added:
            await conn.execute(
                insert(inventories),
                [
                    {
                        "provider_id": provider.id,
                        "resource_class": inventory.resource_class,
                        "used": 0,
                        **{c: getattr(inventory, c) for c in _COLUMNS},
                    }
                    for inventory in added
                ],
            )

    async def _update(
        self, conn: AsyncConnection, provider: Provider, inventory: Inventory
    ) -> None:
        values = {c: getattr(inventory, c) for c in _COLUMNS}
        result = await conn.execute(
            update(inventories)
            .where(
                inventories.c.provider_id == provider.id,
                inventories.c.resource_class == inventory.resource_class,
                # Still holds what is allocated under the new numbers.
                inventories.c.used
                <= (inventory.total - inventory.reserved) * inventory.allocation_ratio,
            )
            .values(**values)
        )
        if result.rowcount == 0:
            used = await conn.scalar(
                select(inventories.c.used).where(
                    inventories.c.provider_id == provider.id,
                    inventories.c.resource_class == inventory.resource_class,
                )
            )
            raise _in_use(provider, inventory, used)
