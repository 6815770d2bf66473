"""Group commit, in process on a real database: claims that arrive together
share a transaction, and each keeps its own outcome."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from services.common.db import Database, resolve_url
from services.common.errors import Conflict, Unavailable
from services.placement import claim_statement, group_commit
from services.placement.allocations import Allocations, PutAllocations
from services.placement.app import MIGRATIONS
from services.placement.capacity_index.refresh import CapacityIndex
from services.placement.inventories import Inventories
from services.placement.providers import ResourceProviders
from services.placement.resources import Inventory


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
    """The size of every batch written (one group-commit write each)."""
    sizes: list[int] = []
    commit = group_commit.GroupCommit._commit

    async def spy(self, requests):
        sizes.append(len(requests))
        return await commit(self, requests)

    monkeypatch.setattr(group_commit.GroupCommit, "_commit", spy)
    return sizes


@pytest.fixture
def statements(monkeypatch) -> list[str]:
    """How each batch sent as one statement (PostgreSQL) ended: "written",
    or "refused" (then written again by the exact path)."""
    ends: list[str] = []
    claim_all = claim_statement.claim_all

    def spy(conn, requests, written):
        try:
            outcomes = claim_all(conn, requests, written)
        except IntegrityError:
            ends.append("refused")
            raise
        ends.append("written")
        return outcomes

    monkeypatch.setattr(claim_statement, "claim_all", spy)
    return ends


async def test_one_refused_claim_of_a_batch_fails_alone(placement, batches):
    db, index = placement
    allocations = Allocations(db, index.state)
    full, roomy = await host(db, index, 1), await host(db, index, 8)
    claims = [claim(roomy), claim(full), claim(full), claim(roomy)]
    outcomes = await asyncio.gather(*(allocations.put(c) for c in claims), return_exceptions=True)
    assert batches == [4]  # one batch
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


# PostgreSQL's one-statement path (claim_statement.py). SQLite has no
# data-modifying CTEs and never takes it.


@pytest.fixture
def postgres_url(postgres, tmp_path) -> str:
    postgres.require()
    return resolve_url(postgres.new(), tmp_path, "unit")


@pytest.fixture
async def postgres_placement(postgres_url):
    db = Database(postgres_url)
    await db.migrate(MIGRATIONS)
    index = CapacityIndex(db)
    yield db, index
    await db.close()


def used(index, provider_uuid: str) -> int:
    return index.state.node(index.state.id_of(provider_uuid)).inventories["VCPU"].used


async def test_new_claims_on_distinct_hosts_are_one_statement(
    postgres_placement, batches, statements
):
    db, index = postgres_placement
    allocations = Allocations(db, index.state)
    hosts = [await host(db, index, 4) for _ in range(4)]
    claims = [claim(h, vcpus=2) for h in hosts]
    outcomes = await asyncio.gather(*(allocations.put(c) for c in claims))
    assert (batches, statements) == ([4], ["written"])
    for request, outcome in zip(claims, outcomes, strict=True):
        assert outcome.generation == 1
        assert (await allocations.get(request.consumer_uuid)).allocations == request.allocations
    assert [used(index, h) for h in hosts] == [2, 2, 2, 2]
    # The index took the providers' new generations too: a stale one is refused.
    provider = await ResourceProviders(db, index).get(hosts[0])
    assert index.state.node(index.state.id_of(hosts[0])).generation == provider.generation


async def test_a_refused_claim_in_one_statement_fails_alone(
    postgres_placement, batches, statements
):
    db, index = postgres_placement
    allocations = Allocations(db, index.state)
    full, roomy, other = (
        await host(db, index, 1),
        await host(db, index, 8),
        await host(db, index, 8),
    )
    await allocations.put(claim(full))
    claims = [claim(roomy), claim(full), claim(other), claim(str(uuid.uuid4()))]
    outcomes = await asyncio.gather(*(allocations.put(c) for c in claims), return_exceptions=True)
    assert statements == ["written", "refused"]  # the second batch went the exact way
    assert batches == [1, 4]
    assert [getattr(o, "code", None) for o in outcomes] == [
        None,
        "placement.insufficient_capacity",
        None,
        "placement.provider_not_found",
    ]
    for request, outcome in zip(claims, outcomes, strict=True):
        held = (await allocations.get(request.consumer_uuid)).allocations
        assert held == ({} if isinstance(outcome, Exception) else request.allocations)
    assert [used(index, h) for h in (full, roomy, other)] == [1, 1, 1]


async def test_a_retry_of_a_claim_made_in_one_statement_is_answered(postgres_placement, statements):
    db, index = postgres_placement
    allocations = Allocations(db, index.state)
    request = claim(await host(db, index, 4))
    first = await allocations.put(request)
    retry = await allocations.put(request)
    assert statements == ["written", "refused"]
    assert first == retry
    assert used(index, next(iter(request.allocations))) == 1


@pytest.mark.parametrize("refusal", ["no room", "unknown provider", "consumer exists"])
async def test_the_statement_writes_nothing_when_any_claim_is_refused(postgres_placement, refusal):
    db, index = postgres_placement
    allocations = Allocations(db, index.state)
    roomy, full = await host(db, index, 8), await host(db, index, 1)
    taken = await allocations.put(claim(full))
    last = {
        "no room": claim(full),
        "unknown provider": claim(str(uuid.uuid4())),
        "consumer exists": claim(roomy, consumer=taken.consumer_uuid),
    }[refusal]
    batch = [claim(roomy), last]
    with pytest.raises(IntegrityError):
        await db.run_alone(claim_statement.claim_all, batch, group_commit.Written())
    assert (await allocations.get(batch[0].consumer_uuid)).allocations == {}
    assert (await allocations.get(taken.consumer_uuid)).allocations == taken.allocations
    async with db.read() as conn:
        usage = text("SELECT resource_class, sum(used) FROM inventories GROUP BY 1")
        assert dict((await conn.execute(usage)).all()) == {"VCPU": 1}
