"""Group commit, in process on a real database: claims that arrive together
share a transaction, and each keeps its own outcome."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from sqlalchemy.exc import OperationalError

from services.common.db import Database
from services.common.errors import Conflict, InvalidArgument, Unavailable
from services.placement import group_commit
from services.placement.allocations import Allocations, ConsumerAllocations, PutAllocations
from services.placement.app import MIGRATIONS
from services.placement.capacity_index.refresh import CapacityIndex
from services.placement.inventories import Inventories
from services.placement.one_statement import FellShort
from services.placement.providers import ResourceProviders
from services.placement.resources import Inventory
from tests.conftest import PG_ADMIN_URL


@pytest.fixture
async def placement(database_url):
    db = Database(database_url)
    await db.migrate(MIGRATIONS)
    index = CapacityIndex(db)
    yield db, index
    await db.close()


async def host(db, index, vcpus: int) -> str:
    provider = await ResourceProviders(db, index).create(f"host-{uuid.uuid4().hex[:8]}")
    await Inventories(db, index).replace_all(provider.uuid, 0, [Inventory("VCPU", vcpus)])
    return provider.uuid


def claim(provider_uuid: str, vcpus: int = 1, consumer: str | None = None) -> PutAllocations:
    return PutAllocations(
        consumer or str(uuid.uuid4()), None, "p", "u", {provider_uuid: {"VCPU": vcpus}}
    )


@pytest.fixture
def batches(monkeypatch) -> list[int]:
    """The size of every batch written (each first tried as one net change)."""
    sizes: list[int] = []
    together = group_commit.write_together

    async def spy(db, index, requests):
        sizes.append(len(requests))
        return await together(db, index, requests)

    monkeypatch.setattr(group_commit, "write_together", spy)
    return sizes


@pytest.fixture
def one_statement(monkeypatch) -> list[str]:
    """How each try of one_statement's writers ended, as "<writer> written"
    or "<writer> fell short"."""
    ends: list[str] = []
    choose = group_commit.one_statement_writer

    def spy_on_choice(dialect, requests):
        writer = choose(dialect, requests)
        if writer is None:
            return None

        async def spy(db, requests, written):
            try:
                answers = await writer(db, requests, written)
            except FellShort:
                ends.append(f"{writer.__name__} fell short")
                raise
            ends.append(f"{writer.__name__} written")
            return answers

        return spy

    monkeypatch.setattr(group_commit, "one_statement_writer", spy_on_choice)
    return ends


async def test_one_refused_claim_of_a_batch_fails_alone(placement, batches):
    db, index = placement
    allocations = Allocations(db, index.state)
    full, roomy = await host(db, index, 1), await host(db, index, 8)
    claims = [claim(roomy), claim(full), claim(full), claim(roomy)]
    outcomes = await asyncio.gather(*(allocations.put(c) for c in claims), return_exceptions=True)
    assert batches == [4]  # one transaction
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(refused) == 1 and isinstance(refused[0], Conflict)
    assert refused[0].code == "placement.insufficient_capacity"
    for request, outcome in zip(claims, outcomes, strict=True):
        held = (await allocations.get(request.consumer_uuid)).allocations
        assert held == ({} if outcome is refused[0] else request.allocations)
    # The index took exactly what the database holds.
    for provider_uuid, used in ((full, 1), (roomy, 2)):
        node = index.state.node(index.state.id_of(provider_uuid))
        assert node.inventories["VCPU"].used == used


async def test_a_retry_racing_its_original_is_answered_with_the_same_claim(placement, batches):
    db, index = placement
    allocations = Allocations(db, index.state)
    request = claim(await host(db, index, 4))
    first, retry = await asyncio.gather(allocations.put(request), allocations.put(request))
    assert batches == [1, 1]  # one consumer per batch
    assert first == retry
    node = index.state.node(index.state.id_of(next(iter(request.allocations))))
    assert node.inventories["VCPU"].used == 1  # counted once


async def test_a_database_lost_mid_batch_fails_every_claim_retryably(placement, monkeypatch):
    db, index = placement
    allocations = Allocations(db, index.state)
    provider = await host(db, index, 8)
    write_all = group_commit.write_all

    def lost_after_writing(conn, requests, written):
        write_all(conn, requests, written)
        raise OperationalError("COMMIT", {}, ConnectionError("server closed the connection"))

    monkeypatch.setattr(group_commit, "write_all", lost_after_writing)
    # The exact way, inside a transaction (a batch of new claims would go as
    # one statement on PostgreSQL, in autocommit: it is kept or not as a whole).
    monkeypatch.setattr(group_commit, "one_statement_writer", lambda dialect, requests: None)
    claims = [claim(provider) for _ in range(4)]
    outcomes = await asyncio.gather(*(allocations.put(c) for c in claims), return_exceptions=True)
    assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
    assert {o.code for o in outcomes} == {"stratus.database_unavailable"}
    # Nothing was written, and the index did not take what was rolled back.
    monkeypatch.undo()
    for request in claims:
        assert (await allocations.get(request.consumer_uuid)).allocations == {}
    assert index.state.node(index.state.id_of(provider)).inventories["VCPU"].used == 0
    # The database is back: the same claims go through.
    await asyncio.gather(*(allocations.put(c) for c in claims))
    assert index.state.node(index.state.id_of(provider)).inventories["VCPU"].used == 4


def on_postgresql(db: Database) -> bool:
    return db.engine.dialect.name == "postgresql"


@pytest.mark.parametrize("dropped", ["before the batch", "as the batch goes"])
async def test_sessions_dropped_under_the_one_statement_lose_no_claim(
    placement, one_statement, dropped
):
    """The database server drops every session placement holds in its pool
    (a restart, an operator). The one statement meets a dead session; the
    batch is written the exact way on new sessions, or, if the drop catches
    that too, fails retryably. Either way each claim is held in full or not
    at all, the index agrees, and the next batch is one statement again."""
    db, index = placement
    if not on_postgresql(db):
        pytest.skip("the one statement is PostgreSQL's")
    allocations = Allocations(db, index.state)
    provider = await host(db, index, 16)
    # Several pooled sessions, the claim statement prepared on one of them.
    await asyncio.gather(*(allocations.put(claim(provider)) for _ in range(4)))
    await asyncio.gather(*(allocations.get(str(uuid.uuid4())) for _ in range(6)))
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            db.engine.url.database,
        )
        for _ in range(500 if dropped == "before the batch" else 0):  # until gone, up to 5 s
            gone = not await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", db.engine.url.database
            )
            if gone:
                break
            await asyncio.sleep(0.01)
    finally:
        await admin.close()
    claims = [claim(provider) for _ in range(4)]
    outcomes = await asyncio.gather(*(allocations.put(c) for c in claims), return_exceptions=True)
    landed = [
        c for c, o in zip(claims, outcomes, strict=True) if isinstance(o, ConsumerAllocations)
    ]
    failed = [o for o in outcomes if not isinstance(o, ConsumerAllocations)]
    assert all(isinstance(o, Unavailable) for o in failed), failed
    if dropped == "before the batch":
        assert not failed  # written the exact way, on new sessions
    for request in claims:
        held = (await allocations.get(request.consumer_uuid)).allocations
        assert held == (request.allocations if request in landed else {})
    used = 4 + len(landed)
    assert index.state.node(index.state.id_of(provider)).inventories["VCPU"].used == used
    one_statement.clear()
    await asyncio.gather(*(allocations.put(claim(provider)) for _ in range(2)))
    assert "write_new_claims written" in one_statement
    assert index.state.node(index.state.id_of(provider)).inventories["VCPU"].used == used + 2


async def test_new_claims_on_distinct_inventories_take_one_statement(placement, one_statement):
    db, index = placement
    allocations = Allocations(db, index.state)
    hosts = [await host(db, index, 4) for _ in range(4)]
    claims = [claim(h, vcpus=2) for h in hosts]
    answers = await asyncio.gather(*(allocations.put(c) for c in claims))
    assert [a.allocations for a in answers] == [c.allocations for c in claims]
    assert all(a.generation == 1 for a in answers)
    # PostgreSQL wrote the batch in one statement; SQLite never tries it.
    assert one_statement == (["write_new_claims written"] if on_postgresql(db) else [])
    for request in claims:
        assert (await allocations.get(request.consumer_uuid)).allocations == request.allocations
    for provider_uuid in hosts:
        node = index.state.node(index.state.id_of(provider_uuid))
        assert node.inventories["VCPU"].used == 2
        assert node.generation == 2  # inventory set, then this claim


async def test_new_claims_sharing_an_inventory_take_one_statement(placement, one_statement):
    db, index = placement
    allocations = Allocations(db, index.state)
    shared, other = await host(db, index, 8), await host(db, index, 8)
    claims = [claim(shared, vcpus=2), claim(shared, vcpus=3), claim(other), claim(shared)]
    answers = await asyncio.gather(*(allocations.put(c) for c in claims))
    assert [a.allocations for a in answers] == [c.allocations for c in claims]
    assert one_statement == (["write_new_claims written"] if on_postgresql(db) else [])
    for request in claims:
        assert (await allocations.get(request.consumer_uuid)).allocations == request.allocations
    for provider_uuid, used in ((shared, 6), (other, 1)):
        node = index.state.node(index.state.id_of(provider_uuid))
        assert node.inventories["VCPU"].used == used
        assert node.generation == 2  # inventory set, then this batch


@pytest.mark.parametrize("short_by", ["their sum", "a step", "a maximum"])
async def test_claims_sharing_an_inventory_that_do_not_all_fit_fall_short(
    placement, one_statement, short_by
):
    """Each claim alone fits; together (by their sum), or one of them (not a
    unit the inventory hands out), do not. The statement keeps nothing and
    write_all refuses exactly the claim that does not fit."""
    db, index = placement
    allocations = Allocations(db, index.state)
    provider = await ResourceProviders(db, index).create(f"host-{uuid.uuid4().hex[:8]}")
    inventory, amounts = {
        "their sum": (Inventory("VCPU", 4), [2, 2, 1]),
        "a step": (Inventory("VCPU", 8, step_size=2), [2, 4, 1]),
        "a maximum": (Inventory("VCPU", 8, max_unit=2), [2, 1, 3]),
    }[short_by]
    await Inventories(db, index).replace_all(provider.uuid, 0, [inventory])
    claims = [claim(provider.uuid, vcpus=n) for n in amounts]
    outcomes = await asyncio.gather(*(allocations.put(c) for c in claims), return_exceptions=True)
    assert one_statement[:1] == (["write_new_claims fell short"] if on_postgresql(db) else [])
    *landed, refused = outcomes
    assert [o.allocations for o in landed] == [c.allocations for c in claims[:2]]
    assert isinstance(refused, Conflict | InvalidArgument), refused
    assert (await allocations.get(claims[2].consumer_uuid)).allocations == {}
    node = index.state.node(index.state.id_of(provider.uuid))
    assert node.inventories["VCPU"].used == sum(amounts[:2])


@pytest.mark.parametrize("short_by", ["no room", "no such provider", "a retry"])
async def test_a_batch_the_one_statement_cannot_finish_is_written_claim_by_claim(
    placement, one_statement, short_by
):
    """Distinct inventories, so PostgreSQL tries the one statement first; one
    claim of the batch stops it. That try leaves nothing behind, and each
    claim gets write_all's answer."""
    db, index = placement
    allocations = Allocations(db, index.state)
    full, roomy = await host(db, index, 2), await host(db, index, 8)
    earlier = await allocations.put(claim(full, vcpus=2))
    one_statement.clear()
    stopper = {
        "no room": claim(full),
        "no such provider": claim(str(uuid.uuid4())),
        "a retry": PutAllocations(earlier.consumer_uuid, None, "p", "u", earlier.allocations),
    }[short_by]
    claims = [claim(roomy), stopper]
    landed, stopped = await asyncio.gather(
        *(allocations.put(c) for c in claims), return_exceptions=True
    )
    assert one_statement[:1] == (["write_new_claims fell short"] if on_postgresql(db) else [])
    assert landed.allocations == claims[0].allocations
    if short_by == "a retry":
        assert stopped == earlier  # answered with what it holds
    else:
        assert (
            stopped.code
            == {
                "no room": "placement.insufficient_capacity",
                "no such provider": "placement.provider_not_found",
            }[short_by]
        )
        assert (await allocations.get(stopper.consumer_uuid)).allocations == {}
    for provider_uuid, used in ((roomy, 1), (full, 2)):
        node = index.state.node(index.state.id_of(provider_uuid))
        assert node.inventories["VCPU"].used == used
        assert node.generation == 2  # the try that fell short bumped nothing


async def test_releases_give_back_everything_in_one_statement(placement, one_statement):
    """Consumers holding several inventories, two of them the same: released
    together, every inventory is back to zero and the consumers are gone; a
    release of a consumer already gone is answered as done."""
    db, index = placement
    allocations = Allocations(db, index.state)
    a, b = await host(db, index, 8), await host(db, index, 8)
    holders = [claim(a, vcpus=2), claim(a, vcpus=3), claim(b, vcpus=1)]
    for request in holders:
        await allocations.put(request)
    one_statement.clear()
    gone = str(uuid.uuid4())
    await asyncio.gather(
        *(allocations.delete(u, None) for u in [*(h.consumer_uuid for h in holders), gone])
    )
    assert one_statement == (["write_releases written"] if on_postgresql(db) else [])
    for request in holders:
        assert await allocations.get(request.consumer_uuid) == ConsumerAllocations(
            request.consumer_uuid
        )
    for provider_uuid, generation in ((a, 4), (b, 3)):
        node = index.state.node(index.state.id_of(provider_uuid))
        assert node.inventories["VCPU"].used == 0
        assert node.generation == generation  # inventory, claims, one release batch
    assert await allocations.project_usages("p") == {}


async def test_a_release_at_a_stale_generation_fails_alone(placement, one_statement):
    db, index = placement
    allocations = Allocations(db, index.state)
    provider = await host(db, index, 8)
    kept, freed = await allocations.put(claim(provider)), await allocations.put(claim(provider))
    one_statement.clear()
    stale, done = await asyncio.gather(
        allocations.delete(kept.consumer_uuid, kept.generation + 1),
        allocations.delete(freed.consumer_uuid, freed.generation),
        return_exceptions=True,
    )
    assert one_statement[:1] == (["write_releases fell short"] if on_postgresql(db) else [])
    assert isinstance(stale, Conflict) and stale.code == "placement.concurrent_update"
    assert done is None
    assert await allocations.get(kept.consumer_uuid) == kept
    assert await allocations.get(freed.consumer_uuid) == ConsumerAllocations(freed.consumer_uuid)
    assert index.state.node(index.state.id_of(provider)).inventories["VCPU"].used == 1
