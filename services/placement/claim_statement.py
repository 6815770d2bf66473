"""PostgreSQL: a batch of new consumers' claims as one statement, one round trip.

Why: on PostgreSQL a group-commit batch (group_commit.py) cost six round
trips (BEGIN, the consumers' INSERT, the providers' UPDATE, the
inventories' UPDATE, the allocations' INSERT, COMMIT), each a SQLAlchemy
execute and an asyncpg exchange, and the batch's Python was most of a
claim's CPU in placement. Here the same four writes are data-modifying
CTEs of one statement, sent outside an explicit transaction: PostgreSQL
runs a lone statement as its own transaction, all or nothing.

The statement is optimistic: it asserts instead of explaining. Each
consumer must be new (its INSERT has no ON CONFLICT: an existing one is a
unique violation), each provider must exist and each amount must fit its
inventory (otherwise the allocation row it would insert has a NULL
provider or amount: a not-null violation). Any violation fails the whole
statement, nothing is written, and the caller writes the batch again by
the exact path (allocation_writes.write_all), which tells each claim why
it was refused or answers an identical retry. Contention is rare with many
hosts, so the common batch costs one statement.

Only batches of new consumers whose (provider, resource class) pairs are
all distinct take this path: write_all checks two amounts on one inventory
one after the other, which one UPDATE cannot. Releases, replacements and
moves also take write_all. SQLite has no data-modifying CTEs; there, and
for everything else, write_all is the only path.
"""

from __future__ import annotations

import functools

from sqlalchemy import TextClause, text
from sqlalchemy.engine import Connection

from services.placement.allocation_writes import Written, rows_for
from services.placement.consumers import ConsumerAllocations, PutAllocations
from services.placement.resources import fits_sql


def eligible(requests: list) -> bool:
    """New consumers only, each inventory asked once in the batch."""
    seen: set[tuple[str, str]] = set()
    for request in requests:
        if not isinstance(request, PutAllocations) or request.generation is not None:
            return False
        if not request.allocations:
            return False
        for provider_uuid, resources in request.allocations.items():
            for resource_class in resources:
                key = (provider_uuid, resource_class)
                if key in seen:
                    return False
                seen.add(key)
    return True


def claim_all(
    conn: Connection, requests: list[PutAllocations], written: Written
) -> list[ConsumerAllocations]:
    """Write every claim in one statement (see the module's note); raises
    the database's IntegrityError, with nothing written, if any is refused."""
    wanted = [
        (provider_uuid, resource_class, amount, r.consumer_uuid)
        for r in requests
        for provider_uuid, resources in r.allocations.items()
        for resource_class, amount in resources.items()
    ]
    consumer_rows, wanted_rows = rows_for(len(requests)), rows_for(len(wanted))
    params: dict[str, object] = {}
    for i in range(consumer_rows):
        r = requests[i] if i < len(requests) else None
        params[f"cu{i}"] = r and r.consumer_uuid
        params[f"cp{i}"] = r and r.project_id
        params[f"cs{i}"] = r and r.user_id
    for i in range(wanted_rows):
        row = wanted[i] if i < len(wanted) else (None, None, None, None)
        params.update({f"wu{i}": row[0], f"wc{i}": row[1], f"wn{i}": row[2], f"wk{i}": row[3]})
    for provider_id, generation, resource_class, used in conn.execute(
        _statement(consumer_rows, wanted_rows), params
    ):
        written.generations[provider_id] = generation
        written.took(provider_id, resource_class, used)
    return [
        ConsumerAllocations(r.consumer_uuid, 1, r.project_id, r.user_id, r.allocations)
        for r in requests
    ]


@functools.lru_cache(maxsize=64)
def _statement(consumer_rows: int, wanted_rows: int) -> TextClause:
    """The claim statement for up to these many consumers and amounts (sizes
    as allocation_writes.rows_for; unused rows are NULL and match nothing)."""
    new_consumers = ", ".join(
        f"(CAST(:cu{i} AS VARCHAR), CAST(:cp{i} AS VARCHAR), CAST(:cs{i} AS VARCHAR))"
        for i in range(consumer_rows)
    )
    wanted = ", ".join(
        f"(CAST(:wu{i} AS VARCHAR), CAST(:wc{i} AS VARCHAR), CAST(:wn{i} AS INTEGER), "
        f"CAST(:wk{i} AS VARCHAR))"
        for i in range(wanted_rows)
    )
    # Every data-modifying CTE runs to completion, read by the final SELECT or not.
    return text(
        f"WITH wanted(provider_uuid, resource_class, n, consumer_uuid) AS (VALUES {wanted}), "
        # No ON CONFLICT: a consumer that exists already fails the statement.
        "new_consumers AS (INSERT INTO consumers (uuid, project_id, user_id, generation) "
        f"SELECT uuid, project_id, user_id, 1 FROM (VALUES {new_consumers}) "
        "AS c(uuid, project_id, user_id) WHERE uuid IS NOT NULL), "
        # Each provider is locked before its inventories, as every writer
        # does; across providers the order may interleave, and a deadlock
        # with another writer (PostgreSQL detects it) sends the batch the
        # exact way.
        "bumped AS (UPDATE resource_providers SET generation = generation + 1 "
        "WHERE uuid IN (SELECT provider_uuid FROM wanted) RETURNING uuid, id, generation), "
        "taken AS (UPDATE inventories SET used = inventories.used + wanted.n "
        "FROM wanted JOIN bumped ON bumped.uuid = wanted.provider_uuid "
        "WHERE inventories.provider_id = bumped.id "
        "AND inventories.resource_class = wanted.resource_class "
        f"AND {fits_sql('inventories', 'wanted.n')} "
        "RETURNING inventories.provider_id, inventories.resource_class, inventories.used, "
        "wanted.n), "
        # An unknown provider leaves provider_id NULL, a refused amount leaves
        # used NULL: either is a not-null violation, and nothing is written.
        "held AS (INSERT INTO allocations (consumer_uuid, provider_id, resource_class, used) "
        "SELECT wanted.consumer_uuid, bumped.id, wanted.resource_class, taken.n FROM wanted "
        "LEFT JOIN bumped ON bumped.uuid = wanted.provider_uuid "
        "LEFT JOIN taken ON taken.provider_id = bumped.id "
        "AND taken.resource_class = wanted.resource_class "
        "WHERE wanted.consumer_uuid IS NOT NULL RETURNING 1) "
        "SELECT bumped.id, bumped.generation, taken.resource_class, taken.used "
        "FROM bumped JOIN taken ON taken.provider_id = bumped.id"
    )
