"""Writing allocations: one net change for one or more consumers, inside the
caller's write transaction.

  1. every consumer's generation is checked and taken: new consumers are
     inserted in one statement; one that exists already is answered with
     what it holds if the request is an identical retry, anything else is a
     conflict; a given generation must be the current one; consumers to
     release (Release) are locked and read in one statement each for all
     of them, and one already gone has nothing left to give back;
  2. every touched provider's generation is bumped, before any inventory
     row, the providers locked in order of id: all writers lock providers
     then inventories in one order, so concurrent writers queue instead of
     deadlocking;
  3. the old allocations are released and the new ones taken, each by a
     conditional UPDATE that matches only while the amount fits.
If any step fails the caller's transaction (or savepoint) rolls back and
nothing is left behind. The statements RETURN the generations and usage
they left (Written), which the replica's capacity index takes once the
transaction has committed.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import (
    ARRAY,
    Integer,
    String,
    TextClause,
    bindparam,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection

from services.common.db import in_ids
from services.common.errors import Conflict, FieldViolation, InvalidArgument
from services.placement.capacity_index.state import ProviderIndex
from services.placement.consumers import (
    ConsumerAllocations,
    PutAllocations,
    Release,
    allocations,
    consumer_conflict,
    consumers,
    read_consumer,
)
from services.placement.inventories import inventories_query
from services.placement.resources import Inventory, fits_sql


@dataclass
class Written:
    """Provider generations and inventory usage a write left, as RETURNed."""

    generations: dict[int, int] = field(default_factory=dict)
    used: dict[int, dict[str, int]] = field(default_factory=dict)

    def took(self, provider_id: int, resource_class: str, used: int) -> None:
        self.used.setdefault(provider_id, {})[resource_class] = used

    def add(self, later: Written) -> None:
        self.generations.update(later.generations)
        for provider_id, used in later.used.items():
            self.used.setdefault(provider_id, {}).update(used)

    def apply_to(self, index: ProviderIndex) -> None:
        """Once committed: the index takes what the database now holds."""
        for provider_id, generation in self.generations.items():
            index.change(provider_id, generation, used=self.used.get(provider_id))


@dataclass
class _Prepared:
    request: PutAllocations
    generation: int
    old: list[tuple[int, str, int]]  # (provider id, class, amount) held before
    answer: ConsumerAllocations | None = None  # set when nothing is left to do


def _existing(conn: Connection, request: PutAllocations) -> _Prepared:
    """A new consumer that exists already: an identical retry, or a conflict."""
    current = read_consumer(conn, request.consumer_uuid)
    if current and (current.allocations, current.project_id, current.user_id) == (
        request.allocations,
        request.project_id,
        request.user_id,
    ):
        return _Prepared(request, current.generation, [], answer=current)
    generation = current.generation if current else "?"
    raise consumer_conflict(
        request.consumer_uuid,
        f"it exists already at generation {generation}; pass consumer_generation "
        "to replace its allocations",
    )


def _next_generation(conn: Connection, request: PutAllocations) -> _Prepared:
    """Take an existing consumer's next generation; read what it holds now."""
    consumer = request.consumer_uuid
    changed = conn.execute(
        update(consumers)
        .where(consumers.c.uuid == consumer, consumers.c.generation == request.generation)
        .values(
            generation=consumers.c.generation + 1,
            project_id=request.project_id,
            user_id=request.user_id,
        )
    )
    if changed.rowcount == 0:
        current = conn.scalar(select(consumers.c.generation).where(consumers.c.uuid == consumer))
        raise consumer_conflict(
            consumer,
            "it does not exist; omit consumer_generation to create it"
            if current is None
            else f"it is at generation {current}, not {request.generation}; "
            "read it again and retry",
        )
    old = [
        tuple(r)
        for r in conn.execute(
            select(
                allocations.c.provider_id, allocations.c.resource_class, allocations.c.used
            ).where(allocations.c.consumer_uuid == consumer)
        )
    ]
    return _Prepared(request, request.generation + 1, old)


def _prepare_releases(conn: Connection, releases: list[Release]) -> dict[str, _Prepared]:
    """Lock the consumers to release and read what they hold, two statements
    for all of them. Each becomes an empty put at its current generation."""
    uuids = [r.consumer_uuid for r in releases]
    current = dict(
        conn.execute(
            select(consumers.c.uuid, consumers.c.generation)
            .where(in_ids(conn, consumers.c.uuid, uuids))
            .order_by(consumers.c.uuid)  # one lock order for every writer
            .with_for_update()
        ).all()
    )
    held: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
    if current:
        for consumer, provider_id, resource_class, used in conn.execute(
            select(
                allocations.c.consumer_uuid,
                allocations.c.provider_id,
                allocations.c.resource_class,
                allocations.c.used,
            ).where(in_ids(conn, allocations.c.consumer_uuid, current))
        ):
            held[consumer].append((provider_id, resource_class, used))
    prepared = {}
    for release in releases:
        consumer, generation = release.consumer_uuid, current.get(release.consumer_uuid)
        if generation is None:  # released already: nothing to give back
            prepared[consumer] = _Prepared(
                PutAllocations(consumer, None, "", "", {}), 0, [], ConsumerAllocations(consumer)
            )
            continue
        if release.generation is not None and release.generation != generation:
            raise consumer_conflict(
                consumer,
                f"it is at generation {generation}, not {release.generation}; "
                "read it again and retry",
            )
        prepared[consumer] = _Prepared(
            PutAllocations(consumer, generation, "", "", {}), generation + 1, held[consumer]
        )
    return prepared


def _prepare_all(conn: Connection, requests: list[PutAllocations | Release]) -> list[_Prepared]:
    releases = [r for r in requests if isinstance(r, Release)]
    released = _prepare_releases(conn, releases) if releases else {}
    new = [r for r in requests if isinstance(r, PutAllocations) and r.generation is None]
    created: set[str] = set()
    if new:
        created = _insert_new_consumers(conn, new)
    prepared = []
    for request in requests:
        if isinstance(request, Release):
            prepared.append(released[request.consumer_uuid])
        elif request.generation is not None:
            prepared.append(_next_generation(conn, request))
        elif request.consumer_uuid in created:
            prepared.append(_Prepared(request, 1, []))
        else:
            prepared.append(_existing(conn, request))
    return prepared


def write_all(
    conn: Connection, requests: list[PutAllocations | Release], written: Written
) -> list[ConsumerAllocations]:
    """Write every request's allocations as one net change: all that the
    consumers held is released first, then all they ask for is taken. A
    release's answer is the consumer holding nothing."""
    prepared = _prepare_all(conn, requests)
    pending = [p for p in prepared if p.answer is None]
    wanted = sorted({u for p in pending for u in p.request.allocations})
    old = sorted(row for p in pending for row in p.old)
    # One statement takes every touched provider's next generation and maps
    # the uuids asked for to ids; providers are locked before inventories.
    ids: dict[str, int] = {}
    old_ids = sorted({row[0] for row in old})
    if wanted or old_ids:
        bump = _BUMP_PROVIDERS_PG if conn.dialect.name == "postgresql" else _BUMP_PROVIDERS
        bumped = conn.execute(bump, {"uuids": wanted or [""], "ids": old_ids or [0]})
        for provider_uuid, provider_id, generation in bumped:
            ids[provider_uuid] = provider_id
            written.generations[provider_id] = generation
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
        # Consumers of a batch may hold the same inventory: give back their sum.
        freed: dict[tuple[int, str], int] = defaultdict(int)
        for pid, rc, n in old:
            freed[(pid, rc)] += n
        for row in _adjust(conn, _give_back_statement, freed):
            written.took(*row)
    holders = [p.request.consumer_uuid for p in pending if p.old]
    if holders:
        conn.execute(delete(allocations).where(in_ids(conn, allocations.c.consumer_uuid, holders)))
    if new:
        _take(conn, new, uuids, written)
        conn.execute(
            insert(allocations),
            [
                {"consumer_uuid": c, "provider_id": p, "resource_class": rc, "used": n}
                for p, rc, n, c in new
            ],
        )
    emptied = [p.request.consumer_uuid for p in pending if not p.request.allocations]
    if emptied:
        # Nothing held any more: forget the consumer, as a delete would.
        conn.execute(delete(consumers).where(in_ids(conn, consumers.c.uuid, emptied)))
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


# Hot statements, built once (see _take_statement). On PostgreSQL lists go
# as array parameters, so one statement serves every batch size: each new
# text is parsed and planned by the server and prepared by asyncpg (a round
# trip) on each pooled connection (services/common/db.py: in_ids).
#
# PostgreSQL locks the rows an UPDATE changes in the order its plan meets them,
# which for a scan is where the rows happen to lie (and an update moves a row):
# two batches over the same providers deadlocked, and after a second's wait one
# was refused. The locking subquery takes them in one order, by id, first.
_BUMP_PROVIDERS_PG = text(
    "UPDATE resource_providers SET generation = resource_providers.generation + 1 "
    "FROM (SELECT id FROM resource_providers WHERE uuid = ANY(:uuids) OR id = ANY(:ids) "
    "ORDER BY id FOR NO KEY UPDATE) AS locked WHERE resource_providers.id = locked.id "
    "RETURNING resource_providers.uuid, resource_providers.id, resource_providers.generation"
).bindparams(bindparam("uuids", type_=ARRAY(String)), bindparam("ids", type_=ARRAY(Integer)))
_BUMP_PROVIDERS = text(
    "UPDATE resource_providers SET generation = generation + 1 "
    "WHERE uuid IN :uuids OR id IN :ids RETURNING uuid, id, generation"
).bindparams(bindparam("uuids", expanding=True), bindparam("ids", expanding=True))


# New consumers at generation 1 from arrays :uuids, :projects, :users; the
# uuids of those that were not there (one_statement.py uses it too).
NEW_CONSUMERS_PG_SQL = (
    "INSERT INTO consumers (uuid, project_id, user_id, generation) "
    "SELECT u, p, s, 1 FROM unnest(:uuids, :projects, :users) AS t(u, p, s) "
    "ON CONFLICT DO NOTHING RETURNING uuid"
)
_NEW_CONSUMERS_PG = text(NEW_CONSUMERS_PG_SQL).bindparams(
    *(bindparam(n, type_=ARRAY(String)) for n in ("uuids", "projects", "users"))
)


def _insert_new_consumers(conn: Connection, new: list[PutAllocations]) -> set[str]:
    """INSERT new consumers at generation 1; the uuids of those that were not there."""
    if conn.dialect.name == "postgresql":
        columns = {
            "uuids": [r.consumer_uuid for r in new],
            "projects": [r.project_id for r in new],
            "users": [r.user_id for r in new],
        }
        return set(conn.scalars(_NEW_CONSUMERS_PG, columns))
    params = {}
    for i, r in enumerate(new):
        params.update({f"u{i}": r.consumer_uuid, f"p{i}": r.project_id, f"s{i}": r.user_id})
    return set(conn.scalars(_new_consumers_statement(len(new)), params))


@functools.lru_cache(maxsize=64)
def _new_consumers_statement(rows: int) -> TextClause:
    """SQLite's INSERT of `rows` new consumers: one VALUES row each."""
    values = ", ".join(f"(:u{i}, :p{i}, :s{i}, 1)" for i in range(rows))
    return text(
        f"INSERT INTO consumers (uuid, project_id, user_id, generation) VALUES {values} "
        "ON CONFLICT DO NOTHING RETURNING uuid"
    )


def _wanted(rows: int) -> str:
    """A CTE of (provider_id, resource_class, n) rows bound as :p<i>, :c<i>, :n<i>."""
    values = ", ".join(
        f"(CAST(:p{i} AS INTEGER), CAST(:c{i} AS VARCHAR), CAST(:n{i} AS INTEGER))"
        for i in range(rows)
    )
    return f"WITH wanted(provider_id, resource_class, n) AS (VALUES {values}) "


def _rows_for(count: int) -> int:
    """The statement size that holds `count` rows: a power of two, so a few
    sizes serve every batch. One statement per exact count meant hundreds of
    sizes under a boot run, each compiled by SQLAlchemy on first use and
    again once its compiled-cache entry was pushed out."""
    return 1 << max(count - 1, 0).bit_length()


def _adjust(
    conn: Connection,
    statement: Callable[[int], TextClause],
    amounts: dict[tuple[int, str], int],
):
    """Run the take or give-back statement of the right size on these amounts;
    its RETURNING rows."""
    rows = _rows_for(len(amounts))
    return conn.execute(statement(rows), _amounts(amounts, rows))


def _amounts(amounts: dict[tuple[int, str], int], rows: int) -> dict[str, object]:
    """The parameters of a statement of `rows` rows: the amounts, then NULL
    rows, which match no inventory."""
    params: dict[str, object] = {}
    for i, ((provider_id, resource_class), amount) in enumerate(amounts.items()):
        params.update({f"p{i}": provider_id, f"c{i}": resource_class, f"n{i}": amount})
    for i in range(len(amounts), rows):
        params.update({f"p{i}": None, f"c{i}": None, f"n{i}": None})
    return params


_ADJUST = (
    "UPDATE inventories SET used = inventories.used {sign} wanted.n FROM wanted "
    "WHERE inventories.provider_id = wanted.provider_id "
    "AND inventories.resource_class = wanted.resource_class "
)
_ADJUSTED = "RETURNING inventories.provider_id, inventories.resource_class, inventories.used"


@functools.lru_cache(maxsize=32)
def _take_statement(rows: int) -> TextClause:
    """UPDATE adding n to each listed inventory's usage while n fits
    (resources.fits_sql), RETURNING the rows that took it. Built once per
    size (_rows_for), as is _give_back_statement: claims and releases are hot, and
    composing expressions per call costs more than the database does."""
    return text(
        _wanted(rows)
        + _ADJUST.format(sign="+")
        + f"AND {fits_sql('inventories', 'wanted.n')} "
        + _ADJUSTED
    )


@functools.lru_cache(maxsize=32)
def _give_back_statement(rows: int) -> TextClause:
    """UPDATE taking n off each listed inventory's usage, RETURNING the rows."""
    return text(_wanted(rows) + _ADJUST.format(sign="-") + _ADJUSTED)


def _take(
    conn: Connection,
    new: list[tuple[int, str, int, str]],
    uuids: dict[int, str],
    written: Written,
) -> None:
    """Add every amount to its inventory's usage by conditional UPDATEs.

    A row changes only while its amount fits; RETURNING names the rows that
    took it, so a refusal can say which inventory was short (the caller's
    transaction then rolls everything back). One UPDATE per round: when
    consumers of a batch share an inventory, each round takes one amount
    per inventory, so each is checked against what the ones before it took.
    """
    rounds: list[dict[tuple[int, str], int]] = []
    for provider_id, resource_class, amount, _ in new:
        key = (provider_id, resource_class)
        free = next((r for r in rounds if key not in r), None)
        if free is None:
            free = {}
            rounds.append(free)
        free[key] = amount
    for merged in rounds:
        _take_round(conn, merged, uuids, written)


def _take_round(
    conn: Connection,
    merged: dict[tuple[int, str], int],
    uuids: dict[int, str],
    written: Written,
) -> None:
    taken = set()
    for provider_id, resource_class, used in _adjust(conn, _take_statement, merged):
        taken.add((provider_id, resource_class))
        written.took(provider_id, resource_class, used)
    refused = merged.keys() - taken
    if refused:
        provider_id, resource_class = min(refused)
        raise _explain_refusal(
            conn,
            uuids[provider_id],
            provider_id,
            resource_class,
            merged[(provider_id, resource_class)],
        )


def _explain_refusal(
    conn: Connection, provider_uuid: str, provider_id: int, resource_class: str, amount: int
) -> Exception:
    """Why a conditional claim matched no row: a bad request, or no room."""
    found = [
        Inventory(*row) for row in conn.execute(inventories_query(provider_id, resource_class))
    ]
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
