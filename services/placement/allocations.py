"""Claims: who holds what, all or nothing, never beyond capacity.

One write transaction per request (or per batch, as one net change):
  1. the consumer's generation is checked and bumped (a new consumer is
     inserted; if it exists already, an identical retry is answered with
     what it holds, anything else is a conflict);
  2. every touched provider's generation is bumped, in id order, before any
     inventory row: all writers lock providers then inventories in one order,
     so concurrent writers queue instead of deadlocking;
  3. the old allocations are released and the new ones taken, each by a
     conditional UPDATE that matches only while the amount fits.
If any step fails the transaction rolls back and nothing is left behind.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from sqlalchemy import (
    TextClause,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.db import Database
from services.common.errors import Conflict, FieldViolation, InvalidArgument
from services.placement.inventories import read_inventories
from services.placement.models import AllocationRow, ConsumerRow, InventoryRow, ProviderRow
from services.placement.resources import fits_sql

_consumers = ConsumerRow.__table__
_allocations = AllocationRow.__table__
_inventories = InventoryRow.__table__
_providers = ProviderRow.__table__

# provider uuid -> resource class -> amount
Holdings = dict[str, dict[str, int]]


@dataclass(frozen=True)
class ConsumerAllocations:
    consumer_uuid: str
    generation: int = 0
    project_id: str = ""
    user_id: str = ""
    allocations: Holdings = field(default_factory=dict)


@dataclass(frozen=True)
class PutAllocations:
    consumer_uuid: str
    generation: int | None  # None: a new consumer
    project_id: str
    user_id: str
    allocations: Holdings


def _consumer_conflict(consumer_uuid: str, message: str) -> Conflict:
    return Conflict(f"consumer {consumer_uuid}: {message}", code="placement.concurrent_update")


async def read_consumer(conn: AsyncConnection, consumer_uuid: str) -> ConsumerAllocations | None:
    row = (
        await conn.execute(
            select(_consumers.c.generation, _consumers.c.project_id, _consumers.c.user_id).where(
                _consumers.c.uuid == consumer_uuid
            )
        )
    ).first()
    if row is None:
        return None
    held: Holdings = {}
    rows = await conn.execute(
        select(_providers.c.uuid, _allocations.c.resource_class, _allocations.c.used)
        .join(_providers, _providers.c.id == _allocations.c.provider_id)
        .where(_allocations.c.consumer_uuid == consumer_uuid)
    )
    for provider_uuid, resource_class, used in rows:
        held.setdefault(provider_uuid, {})[resource_class] = used
    return ConsumerAllocations(consumer_uuid, row.generation, row.project_id, row.user_id, held)


async def _explain_refusal(
    conn: AsyncConnection, provider_uuid: str, provider_id: int, resource_class: str, amount: int
) -> Exception:
    """Why a conditional claim matched no row: a bad request, or no room."""
    found = await read_inventories(conn, provider_id, resource_class)
    where = f"{resource_class} on resource provider {provider_uuid}"
    if not found:
        return InvalidArgument(
            f"{where}: the provider has no such inventory", code="placement.inventory_not_found"
        )
    inventory = found[0]
    if not (inventory.min_unit <= amount <= inventory.max_unit) or amount % inventory.step_size:
        return InvalidArgument(
            f"{where}: {amount} is not allowed; amounts go from {inventory.min_unit} to "
            f"{inventory.max_unit} in steps of {inventory.step_size}",
            code="placement.invalid_amount",
        )
    free = max(inventory.capacity - inventory.used, 0)
    return Conflict(
        f"{where}: asked {amount}, {free} of {inventory.capacity} free",
        code="placement.insufficient_capacity",
    )


@dataclass
class _Prepared:
    request: PutAllocations
    generation: int
    old: list[tuple[int, str, int]]  # (provider id, class, amount) held before
    answer: ConsumerAllocations | None = None  # set when nothing is left to do


async def _prepare(conn: AsyncConnection, request: PutAllocations) -> _Prepared:
    """Check and take the consumer's next generation; read what it holds now."""
    consumer = request.consumer_uuid
    if request.generation is None:
        created = await conn.execute(
            _NEW_CONSUMER,
            {"uuid": consumer, "project": request.project_id, "user": request.user_id},
        )
        if created.rowcount == 0:
            current = await read_consumer(conn, consumer)
            if current and (current.allocations, current.project_id, current.user_id) == (
                request.allocations,
                request.project_id,
                request.user_id,
            ):
                return _Prepared(request, current.generation, [], answer=current)  # a retry
            generation = current.generation if current else "?"
            raise _consumer_conflict(
                consumer,
                f"it exists already at generation {generation}; pass consumer_generation "
                "to replace its allocations",
            )
        return _Prepared(request, 1, [])
    changed = await conn.execute(
        update(_consumers)
        .where(_consumers.c.uuid == consumer, _consumers.c.generation == request.generation)
        .values(
            generation=_consumers.c.generation + 1,
            project_id=request.project_id,
            user_id=request.user_id,
        )
    )
    if changed.rowcount == 0:
        current = await conn.scalar(
            select(_consumers.c.generation).where(_consumers.c.uuid == consumer)
        )
        raise _consumer_conflict(
            consumer,
            "it does not exist; omit consumer_generation to create it"
            if current is None
            else f"it is at generation {current}, not {request.generation}; "
            "read it again and retry",
        )
    old = [
        tuple(r)
        for r in await conn.execute(
            select(
                _allocations.c.provider_id, _allocations.c.resource_class, _allocations.c.used
            ).where(_allocations.c.consumer_uuid == consumer)
        )
    ]
    return _Prepared(request, request.generation + 1, old)


async def _write_all(
    conn: AsyncConnection, requests: list[PutAllocations]
) -> list[ConsumerAllocations]:
    """Write every request's allocations as one net change: all that the
    consumers held is released first, then all they ask for is taken."""
    prepared = [await _prepare(conn, request) for request in requests]
    pending = [p for p in prepared if p.answer is None]
    wanted = sorted({u for p in pending for u in p.request.allocations})
    old = sorted(row for p in pending for row in p.old)
    # One statement takes every touched provider's next generation and maps
    # the uuids asked for to ids; providers are locked before inventories.
    ids: dict[str, int] = {}
    old_ids = sorted({row[0] for row in old})
    if wanted or old_ids:
        bumped = await conn.execute(
            _BUMP_PROVIDERS, {"uuids": wanted or [""], "ids": old_ids or [0]}
        )
        ids = dict(bumped.all())
    missing = [u for u in wanted if u not in ids]
    if missing:
        raise InvalidArgument(
            f"resource provider {', '.join(missing)} does not exist",
            code="placement.provider_not_found",
            field_violations=tuple(
                FieldViolation("allocations.resource_provider_uuid", m) for m in missing
            ),
        )
    uuids = {v: k for k, v in ids.items()}
    new = sorted(
        (ids[provider_uuid], resource_class, amount, p.request.consumer_uuid)
        for p in pending
        for provider_uuid, resources in p.request.allocations.items()
        for resource_class, amount in resources.items()
    )
    if old:
        await conn.execute(
            update(_inventories)
            .where(or_(*(_row(pid, rc) for pid, rc, _ in old)))
            .values(used=_inventories.c.used - case(*((_row(pid, rc), n) for pid, rc, n in old)))
        )
    holders = [p.request.consumer_uuid for p in pending if p.old]
    if holders:
        await conn.execute(delete(_allocations).where(_allocations.c.consumer_uuid.in_(holders)))
    if new:
        await _take(conn, new, uuids)
    if new:
        await conn.execute(
            insert(_allocations),
            [
                {"consumer_uuid": c, "provider_id": p, "resource_class": rc, "used": n}
                for p, rc, n, c in new
            ],
        )
    emptied = [p.request.consumer_uuid for p in pending if not p.request.allocations]
    if emptied:
        # Nothing held any more: forget the consumer, as a delete would.
        await conn.execute(delete(_consumers).where(_consumers.c.uuid.in_(emptied)))
    return [
        p.answer
        or (
            ConsumerAllocations(
                p.request.consumer_uuid,
                p.generation,
                p.request.project_id,
                p.request.user_id,
                p.request.allocations,
            )
            if p.request.allocations
            else ConsumerAllocations(p.request.consumer_uuid)
        )
        for p in prepared
    ]


def _row(provider_id: int, resource_class: str):
    return and_(
        _inventories.c.provider_id == provider_id, _inventories.c.resource_class == resource_class
    )


# Hot statements, built once (see _take_statement).
_NEW_CONSUMER = text(
    "INSERT INTO consumers (uuid, project_id, user_id, generation) "
    "VALUES (:uuid, :project, :user, 1) ON CONFLICT DO NOTHING"
)
_BUMP_PROVIDERS = text(
    "UPDATE resource_providers SET generation = generation + 1 "
    "WHERE uuid IN :uuids OR id IN :ids RETURNING uuid, id"
).bindparams(bindparam("uuids", expanding=True), bindparam("ids", expanding=True))


@functools.lru_cache(maxsize=64)
def _take_statement(rows: int) -> TextClause:
    """UPDATE adding n to each listed inventory's usage while n fits
    (resources.fits_sql), RETURNING the rows that took it. Built once per
    row count: claims are hot, and composing expressions per call costs more
    than the database does."""
    values = ", ".join(
        f"(CAST(:p{i} AS INTEGER), CAST(:c{i} AS VARCHAR), CAST(:n{i} AS INTEGER))"
        for i in range(rows)
    )
    return text(
        f"WITH wanted(provider_id, resource_class, n) AS (VALUES {values}) "
        "UPDATE inventories SET used = inventories.used + wanted.n FROM wanted "
        "WHERE inventories.provider_id = wanted.provider_id "
        "AND inventories.resource_class = wanted.resource_class "
        f"AND {fits_sql('inventories', 'wanted.n')} "
        "RETURNING inventories.provider_id, inventories.resource_class"
    )


async def _take(
    conn: AsyncConnection, new: list[tuple[int, str, int, str]], uuids: dict[int, str]
) -> None:
    """Add every amount to its inventory's usage in one conditional UPDATE.

    A row changes only while its amount fits; RETURNING names the rows that
    took it, so a refusal can say which inventory was short (the caller's
    transaction then rolls everything back).
    """
    merged: dict[tuple[int, str], int] = {}
    for provider_id, resource_class, amount, _ in new:
        if (provider_id, resource_class) in merged:
            # Two consumers of one batch on one inventory: one at a time.
            for row in new:
                await _take(conn, [row], uuids)
            return
        merged[(provider_id, resource_class)] = amount
    params = {}
    for i, ((provider_id, resource_class), amount) in enumerate(merged.items()):
        params.update({f"p{i}": provider_id, f"c{i}": resource_class, f"n{i}": amount})
    taken = await conn.execute(_take_statement(len(merged)), params)
    refused = merged.keys() - {tuple(row) for row in taken}
    if refused:
        provider_id, resource_class = min(refused)
        raise await _explain_refusal(
            conn,
            uuids[provider_id],
            provider_id,
            resource_class,
            merged[(provider_id, resource_class)],
        )


class Allocations:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, request: PutAllocations) -> ConsumerAllocations:
        async with self._db.write() as conn:
            return (await _write_all(conn, [request]))[0]

    async def put_many(self, requests: list[PutAllocations]) -> list[ConsumerAllocations]:
        consumers = [r.consumer_uuid for r in requests]
        if len(set(consumers)) != len(consumers):
            raise InvalidArgument(
                "each consumer may appear once in a batch", code="placement.duplicate_consumer"
            )
        async with self._db.write() as conn:
            return await _write_all(conn, requests)

    async def get(self, consumer_uuid: str) -> ConsumerAllocations:
        async with self._db.read() as conn:
            return await read_consumer(conn, consumer_uuid) or ConsumerAllocations(consumer_uuid)

    async def delete(self, consumer_uuid: str, generation: int | None) -> None:
        """Release everything the consumer holds. A missing consumer is already deleted."""
        async with self._db.write() as conn:
            current = await conn.scalar(
                select(_consumers.c.generation).where(_consumers.c.uuid == consumer_uuid)
            )
            if current is None:
                return
            if generation is not None and generation != current:
                raise _consumer_conflict(
                    consumer_uuid,
                    f"it is at generation {current}, not {generation}; read it again and retry",
                )
            await _write_all(conn, [PutAllocations(consumer_uuid, current, "", "", {})])

    async def project_usages(self, project_id: str) -> dict[str, int]:
        async with self._db.read() as conn:
            rows = await conn.execute(
                select(_allocations.c.resource_class, func.sum(_allocations.c.used))
                .join(_consumers, _consumers.c.uuid == _allocations.c.consumer_uuid)
                .where(_consumers.c.project_id == project_id)
                .group_by(_allocations.c.resource_class)
            )
            return {rc: int(total) for rc, total in rows}
