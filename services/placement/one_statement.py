"""Batches of new claims, and batches of releases, on PostgreSQL in one
statement each.

Why: the claims of a boot are nearly all for new consumers, and a delete
releases a consumer at any generation. allocation_writes.write_all writes a batch of claims in
four statements (consumers, provider generations, inventories,
allocations) and a batch of releases in six, inside BEGIN and COMMIT, and
with batches of a few claims most of a claim's cost was those round trips:
the Python around each statement, a write to PostgreSQL's socket and a
wake-up of its backend. Here one statement of data-modifying CTEs does
the same work in the same lock order as write_all: consumers first, then
their providers, locked in order of id and bumped, then the inventories.
The amounts asked of one inventory are added up and taken by a conditional
UPDATE that matches only while their sum has room and each of them is a
unit the inventory hands out (resources.room_sql, unit_sql): if the sum
fits, each claim fits in some order, as in write_all. Under READ COMMITTED a row that
another transaction changed after this statement's snapshot is re-read
once its lock is granted, and the condition is checked on what was
committed, so a claim can no more over-commit here than in write_all.

Each statement runs alone, in autocommit (Database.fetch_alone): no BEGIN
and COMMIT round trips, since one statement is all or nothing by itself.
So the statements check themselves. They do not explain refusals: if
anything falls short (a consumer that exists already, an unknown
provider, an amount that does not fit, a release at a stale generation)
the statement's last row fails it with an invalid integer, nothing it did
is kept, and the writer raises FellShort; the caller writes the batch
again with write_all, which says why. PostgreSQL logs each such failure as
an ERROR quoting _FELL_SHORT: expected under contention, not a fault.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from sqlalchemy import ARRAY, Integer, String, bindparam, text

from services.common.db import Database
from services.placement.allocation_writes import NEW_CONSUMERS_PG_SQL, Written
from services.placement.consumers import ConsumerAllocations, PutAllocations, Release
from services.placement.resources import room_sql, unit_sql


class FellShort(Exception):
    """Some claim needs write_all: the statement kept nothing; write them all again there."""


Writer = Callable[[Database, list, Written], Awaitable[list[ConsumerAllocations]]]


def one_statement_writer(dialect: str, requests: list[PutAllocations | Release]) -> Writer | None:
    """The writer of this module for the batch, if one fits: on PostgreSQL,
    releases only, or claims only, each for a new consumer."""
    if dialect != "postgresql":
        return None
    if all(isinstance(r, Release) for r in requests):
        return write_releases
    for request in requests:
        if not isinstance(request, PutAllocations) or request.generation is not None:
            return None
        if not request.allocations:
            return None  # write_all forgets such a consumer rather than create it
    return write_new_claims


async def write_new_claims(
    db: Database, requests: list[PutAllocations], written: Written
) -> list[ConsumerAllocations]:
    """Write every claim, or raise FellShort."""
    rows = [
        (r.consumer_uuid, provider_uuid, resource_class, amount)
        for r in requests
        for provider_uuid, resources in r.allocations.items()
        for resource_class, amount in resources.items()
    ]
    for kind, name, number, value in await _fetch(
        db,
        _CLAIM_NEW,
        {
            "uuids": [r.consumer_uuid for r in requests],
            "projects": [r.project_id for r in requests],
            "users": [r.user_id for r in requests],
            "a_consumers": [row[0] for row in rows],
            "a_providers": [row[1] for row in rows],
            "a_classes": [row[2] for row in rows],
            "a_amounts": [row[3] for row in rows],
        },
    ):
        if kind == "provider":
            written.generations[number] = value
        elif kind == "inventory":
            written.took(number, name, value)
    return [
        ConsumerAllocations(r.consumer_uuid, 1, r.project_id, r.user_id, r.allocations)
        for r in requests
    ]


def _fails_unless(condition: str) -> str:
    """SQL that is 0 if condition holds and otherwise fails the statement, so
    that in autocommit nothing it did is kept. (A CASE on data, not on
    constants: PostgreSQL folds constant expressions while planning.)"""
    return f"CAST(CASE WHEN {condition} THEN '0' ELSE '{_FELL_SHORT}' END AS integer)"


_FELL_SHORT = "stratus placement: batch goes the exact way (expected, not a fault)"
_INVALID_TEXT_REPRESENTATION = "22P02"


async def _fetch(db: Database, statement, parameters: dict) -> list:
    """The statement's rows; FellShort if its check failed it."""
    try:
        return await db.fetch_alone(statement, parameters)
    except asyncpg.PostgresError as exc:
        if exc.sqlstate == _INVALID_TEXT_REPRESENTATION:
            raise FellShort from exc
        raise


# Each CTE reads the ones before it, which orders the work: consumers, then
# the providers (locked in order of id, as write_all locks them), then their
# inventories; the allocations are inserted last. Only the consumers this
# statement created take anything: one that exists already (a retry) is
# left to write_all. The rows returned say what was created, bumped and taken.
_CLAIM_NEW = text(
    "WITH asked(consumer, provider, resource_class, n) AS ("
    " SELECT * FROM unnest(:a_consumers, :a_providers, :a_classes, :a_amounts)), "
    f"new AS ({NEW_CONSUMERS_PG_SQL}), "
    "locked AS ("
    " SELECT id FROM resource_providers WHERE uuid IN"
    " (SELECT asked.provider FROM asked JOIN new ON new.uuid = asked.consumer)"
    " ORDER BY id FOR NO KEY UPDATE), "
    "bumped AS ("
    " UPDATE resource_providers SET generation = resource_providers.generation + 1"
    " FROM locked WHERE resource_providers.id = locked.id"
    " RETURNING resource_providers.uuid, resource_providers.id, resource_providers.generation), "
    "wanted AS ("
    " SELECT bumped.id AS provider_id, asked.resource_class, asked.n, asked.consumer"
    " FROM asked JOIN new ON new.uuid = asked.consumer"
    " JOIN bumped ON bumped.uuid = asked.provider), "
    "summed AS ("
    " SELECT provider_id, resource_class, sum(n) AS n, array_agg(n) AS amounts FROM wanted"
    " GROUP BY provider_id, resource_class), "
    "taken AS ("
    " UPDATE inventories SET used = inventories.used + summed.n FROM summed"
    " WHERE inventories.provider_id = summed.provider_id"
    " AND inventories.resource_class = summed.resource_class"
    f" AND {room_sql('inventories', 'summed.n')}"
    f" AND (SELECT bool_and({unit_sql('inventories', 'u.n')}) FROM unnest(summed.amounts) AS u(n))"
    " RETURNING inventories.provider_id, inventories.resource_class, inventories.used), "
    "held AS ("
    " INSERT INTO allocations (consumer_uuid, provider_id, resource_class, used)"
    " SELECT consumer, provider_id, resource_class, n FROM wanted) "
    "SELECT 'provider', uuid, id, generation FROM bumped "
    "UNION ALL SELECT 'inventory', resource_class, provider_id, used FROM taken "
    "UNION ALL SELECT 'check', '', "
    + _fails_unless(
        "(SELECT count(*) FROM new) = cardinality(:uuids)"
        " AND (SELECT count(*) FROM taken)"
        " = (SELECT count(*) FROM (SELECT DISTINCT provider, resource_class FROM asked) AS d)"
    )
    + ", 0"
).bindparams(
    *(
        bindparam(name, type_=ARRAY(String))
        for name in ("uuids", "projects", "users", "a_consumers", "a_providers", "a_classes")
    ),
    bindparam("a_amounts", type_=ARRAY(Integer)),
)


async def write_releases(
    db: Database, requests: list[Release], written: Written
) -> list[ConsumerAllocations]:
    """Give back all that each consumer holds and forget it, or raise
    FellShort. A consumer already gone has nothing left to give back."""
    for kind, name, number, value in await _fetch(
        db,
        _RELEASE,
        {
            "uuids": [r.consumer_uuid for r in requests],
            "generations": [r.generation for r in requests],
        },
    ):
        if kind == "provider":
            written.generations[number] = value
        elif kind == "inventory":
            written.took(number, name, value)
    return [ConsumerAllocations(r.consumer_uuid) for r in requests]


# Consumers are locked in order of uuid and providers in order of id, as
# write_all locks them. An allocation row is only ever written by a writer
# holding its consumer's lock, so deleting them before the providers are
# locked cannot deadlock.
_RELEASE = text(
    "WITH gone AS ("
    " SELECT uuid, generation FROM consumers WHERE uuid = ANY(:uuids)"
    " ORDER BY uuid FOR UPDATE), "
    "held AS ("
    " DELETE FROM allocations USING gone WHERE allocations.consumer_uuid = gone.uuid"
    " RETURNING allocations.provider_id, allocations.resource_class, allocations.used), "
    "freed AS ("
    " SELECT provider_id, resource_class, sum(used) AS n FROM held"
    " GROUP BY provider_id, resource_class), "
    "locked AS ("
    " SELECT id FROM resource_providers WHERE id IN (SELECT provider_id FROM freed)"
    " ORDER BY id FOR NO KEY UPDATE), "
    "bumped AS ("
    " UPDATE resource_providers SET generation = resource_providers.generation + 1"
    " FROM locked WHERE resource_providers.id = locked.id"
    " RETURNING resource_providers.id, resource_providers.generation), "
    "given AS ("
    " UPDATE inventories SET used = inventories.used - freed.n"
    " FROM freed JOIN bumped ON bumped.id = freed.provider_id"
    " WHERE inventories.provider_id = freed.provider_id"
    " AND inventories.resource_class = freed.resource_class"
    " RETURNING inventories.provider_id, inventories.resource_class, inventories.used), "
    "forgotten AS (DELETE FROM consumers USING gone WHERE consumers.uuid = gone.uuid) "
    "SELECT 'provider', '', id, generation FROM bumped "
    "UNION ALL SELECT 'inventory', resource_class, provider_id, used FROM given "
    "UNION ALL SELECT 'check', '', "
    # A release at a stale generation is left to write_all, which names it.
    + _fails_unless(
        "NOT EXISTS (SELECT FROM gone JOIN unnest(:uuids, :generations) AS asked(uuid, generation)"
        " ON asked.uuid = gone.uuid WHERE asked.generation <> gone.generation)"
    )
    + ", 0"
).bindparams(
    bindparam("uuids", type_=ARRAY(String)), bindparam("generations", type_=ARRAY(Integer))
)
