"""Resource class and trait names.

Standard names come from OpenStack's own lists (os-resource-classes,
os-traits), so a trait a user knows from OpenStack means the same here.
CUSTOM_* names are created by operators or on first use in an inventory or
a provider's traits; anything else is a typo and is refused with the rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import os_resource_classes
import os_traits
from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.db import Database, insert_missing
from services.common.errors import Conflict, FieldViolation, InvalidArgument, NotFound
from services.placement.models import (
    CustomResourceClassRow,
    CustomTraitRow,
    InventoryRow,
    ProviderTraitRow,
)

STANDARD_CLASSES = frozenset(os_resource_classes.STANDARDS)
STANDARD_TRAITS = frozenset(os_traits.get_traits())
CUSTOM_NAME = re.compile(r"^CUSTOM_[A-Z0-9_]{1,248}$")

_classes = CustomResourceClassRow.__table__
_traits = CustomTraitRow.__table__


def _bad_names(kind: str, field: str, bad: list[str]) -> InvalidArgument:
    return InvalidArgument(
        f"unknown {kind} {', '.join(bad)}: use a standard name or one matching CUSTOM_[A-Z0-9_]+",
        code=f"placement.unknown_{kind.replace(' ', '_')}",
        field_violations=tuple(FieldViolation(field, f"unknown {kind} {name!r}") for name in bad),
    )


async def ensure_classes(conn: AsyncConnection, names: Iterable[str], field: str) -> None:
    """Accept standard classes, create CUSTOM_* ones, refuse anything else."""
    names = set(names)
    bad = sorted(n for n in names if n not in STANDARD_CLASSES and not CUSTOM_NAME.match(n))
    if bad:
        raise _bad_names("resource class", field, bad)
    custom = [{"name": n} for n in sorted(names - STANDARD_CLASSES)]
    if custom:  # mostly none: no hop into sync code for nothing
        await conn.run_sync(insert_missing, _classes, custom)


async def ensure_traits(conn: AsyncConnection, names: Iterable[str], field: str) -> None:
    names = set(names)
    bad = sorted(n for n in names if n not in STANDARD_TRAITS and not CUSTOM_NAME.match(n))
    if bad:
        raise _bad_names("trait", field, bad)
    custom = [{"name": n} for n in sorted(names - STANDARD_TRAITS)]
    if custom:
        await conn.run_sync(insert_missing, _traits, custom)


async def check_known(
    conn: AsyncConnection, classes: Iterable[str], traits: Iterable[str], field: str
) -> None:
    """Refuse names nobody has defined: in a query they can only be typos.

    Only non-standard names need the database; a request naming standard
    ones only (the usual case, on the candidate search's hot path) costs
    no query.
    """
    for kind, names, table in (
        ("resource class", set(classes) - STANDARD_CLASSES, _classes),
        ("trait", set(traits) - STANDARD_TRAITS, _traits),
    ):
        if not names:
            continue
        known = set(await conn.scalars(select(table.c.name).where(table.c.name.in_(names))))
        if names - known:
            raise _bad_names(kind, field, sorted(names - known))


class Catalog:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def list_classes(self) -> list[tuple[str, bool]]:
        async with self._db.read() as conn:
            custom = list(await conn.scalars(select(_classes.c.name)))
        return sorted([(n, True) for n in STANDARD_CLASSES] + [(n, False) for n in custom])

    async def create_class(self, name: str) -> None:
        async with self._db.write() as conn:
            await ensure_classes(conn, [name], "name")

    async def delete_class(self, name: str) -> None:
        in_use = exists().where(InventoryRow.resource_class == name)
        await self._delete_custom("resource class", name, STANDARD_CLASSES, _classes, in_use)

    async def list_traits(self, prefix: str) -> list[tuple[str, bool]]:
        async with self._db.read() as conn:
            custom = list(await conn.scalars(select(_traits.c.name)))
        every = [(n, True) for n in STANDARD_TRAITS] + [(n, False) for n in custom]
        return sorted(t for t in every if t[0].startswith(prefix))

    async def create_trait(self, name: str) -> None:
        async with self._db.write() as conn:
            await ensure_traits(conn, [name], "name")

    async def delete_trait(self, name: str) -> None:
        in_use = exists().where(ProviderTraitRow.trait == name)
        await self._delete_custom("trait", name, STANDARD_TRAITS, _traits, in_use)

    async def _delete_custom(self, kind: str, name: str, standard, table, in_use) -> None:
        code = kind.replace(" ", "_")
        if name in standard:
            raise InvalidArgument(
                f"{name} is a standard {kind} and cannot be deleted", code="placement.standard_name"
            )
        async with self._db.write() as conn:
            if await conn.scalar(select(in_use)):
                raise Conflict(
                    f"{kind} {name} is in use; remove it from providers first",
                    code=f"placement.{code}_in_use",
                )
            result = await conn.execute(delete(table).where(table.c.name == name))
        if result.rowcount == 0:
            raise NotFound(f"{kind} {name} does not exist", code=f"placement.{code}_not_found")
