"""Racing claims for the last units, through two placement replicas on one database.

Whatever the interleaving: no provider is over capacity, every claim either
fully succeeded or left nothing behind, and the winners are exactly as many
as there was room for.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from stratus.placement.v1 import allocations_pb2 as pb

from tests.placement_client import Placement, new_uuid, reason

CLAIMERS = 48


@pytest.fixture(scope="module")
def replicas(mesh):
    return [mesh.layout.address("placement"), mesh.start_replica("placement")]


def _race(replicas, claim_of) -> dict[str, str]:
    """Run CLAIMERS claims at once, alternating replicas; consumer -> outcome."""
    channels = [grpc.insecure_channel(address) for address in replicas]
    clients = [Placement(channel) for channel in channels]

    def attempt(i: int) -> tuple[str, str]:
        consumer = new_uuid()
        try:
            clients[i % len(clients)].claim(consumer, claim_of(i))
            return consumer, "won"
        except grpc.RpcError as error:
            return consumer, reason(error)

    try:
        with ThreadPoolExecutor(16) as pool:
            return dict(pool.map(attempt, range(CLAIMERS)))
    finally:
        for channel in channels:
            channel.close()


def test_last_units_go_to_exactly_as_many_claims_as_fit(mesh, replicas):
    with mesh.channel("placement") as channel:
        placement = Placement(channel)
        rp = placement.provider(VCPU=10, MEMORY_MB=10 * 512)
        outcomes = _race(replicas, lambda i: {rp.uuid: {"VCPU": 1, "MEMORY_MB": 512}})
        winners = [c for c, outcome in outcomes.items() if outcome == "won"]
        assert len(winners) == 10, outcomes
        assert set(outcomes.values()) <= {"won", "placement.insufficient_capacity"}
        assert placement.usages(rp.uuid) == {"VCPU": 10, "MEMORY_MB": 5120}
        for consumer, outcome in outcomes.items():
            expected = {rp.uuid: {"VCPU": 1, "MEMORY_MB": 512}} if outcome == "won" else {}
            assert placement.held(consumer) == expected


def test_last_units_of_many_providers_each_go_to_exactly_one_claim(mesh, replicas):
    """Every claim on a provider of its own within a batch: on PostgreSQL the
    batches take group commit's one-statement path (one_statement.py), and
    the two replicas' statements meet on the same rows."""
    with mesh.channel("placement") as channel:
        placement = Placement(channel)
        providers = [placement.provider(VCPU=1) for _ in range(CLAIMERS // 4)]
        outcomes = _race(replicas, lambda i: {providers[i % len(providers)].uuid: {"VCPU": 1}})
        winners = [c for c, outcome in outcomes.items() if outcome == "won"]
        assert len(winners) == len(providers), outcomes
        assert set(outcomes.values()) <= {"won", "placement.insufficient_capacity"}
        holders = {}
        for consumer, outcome in outcomes.items():
            held = placement.held(consumer)
            assert (held != {}) == (outcome == "won")
            for provider_uuid in held:
                assert provider_uuid not in holders, "two claims hold the last unit"
                holders[provider_uuid] = consumer
        for rp in providers:
            assert placement.usages(rp.uuid) == {"VCPU": 1}


def test_claims_spanning_providers_are_all_or_nothing_under_contention(mesh, replicas):
    with mesh.channel("placement") as channel:
        placement = Placement(channel)
        a = placement.provider(VCPU=20)
        b = placement.provider(DISK_GB=6)
        outcomes = _race(replicas, lambda i: {a.uuid: {"VCPU": 1}, b.uuid: {"DISK_GB": 1}})
        winners = [c for c, outcome in outcomes.items() if outcome == "won"]
        assert len(winners) == 6
        # A lost claim released what it had taken on the other provider.
        assert placement.usages(a.uuid) == {"VCPU": 6}
        assert placement.usages(b.uuid) == {"DISK_GB": 6}
        assert all(placement.held(c) == {} for c, outcome in outcomes.items() if outcome != "won")


def _release(client: Placement, consumer: str, generation: int | None = None) -> str:
    try:
        client.call(
            client.allocations.DeleteAllocations,
            pb.DeleteAllocationsRequest(consumer_uuid=consumer, consumer_generation=generation),
        )
        return "released"
    except grpc.RpcError as error:
        return reason(error)


def test_releases_racing_claims_never_over_commit(mesh, replicas):
    """Releases share claims' batches: whatever lands together, a freed unit
    goes to at most one new claim and a released consumer holds nothing."""
    channels = [grpc.insecure_channel(address) for address in replicas]
    clients = [Placement(channel) for channel in channels]
    try:
        placement = clients[0]
        rp = placement.provider(VCPU=10)
        holders = [new_uuid() for _ in range(10)]
        for holder in holders:
            placement.claim(holder, {rp.uuid: {"VCPU": 1}})

        def attempt(i: int) -> tuple[str, str]:
            client = clients[i % len(clients)]
            if i < len(holders):
                return holders[i], _release(client, holders[i])
            consumer = new_uuid()
            try:
                client.claim(consumer, {rp.uuid: {"VCPU": 1}})
                return consumer, "won"
            except grpc.RpcError as error:
                return consumer, reason(error)

        with ThreadPoolExecutor(16) as pool:
            outcomes = dict(pool.map(attempt, range(len(holders) + CLAIMERS)))
        assert all(outcomes[h] == "released" for h in holders), outcomes
        winners = [c for c, outcome in outcomes.items() if outcome == "won"]
        assert set(outcomes.values()) <= {"released", "won", "placement.insufficient_capacity"}
        assert 1 <= len(winners) <= 10
        assert placement.usages(rp.uuid) == {"VCPU": len(winners)}
        for consumer, outcome in outcomes.items():
            assert placement.held(consumer) == ({rp.uuid: {"VCPU": 1}} if outcome == "won" else {})
    finally:
        for channel in channels:
            channel.close()


def _holders(placement: Placement, vcpus: int, each: int) -> tuple[object, list[str]]:
    """A provider of `vcpus` VCPU and 16 consumers holding `each` on it."""
    rp = placement.provider(VCPU=vcpus)
    consumers = [new_uuid() for _ in range(16)]
    for consumer in consumers:
        placement.claim(consumer, {rp.uuid: {"VCPU": each}})
    return rp, consumers


def test_a_stale_release_fails_alone_among_concurrent_ones(mesh):
    with mesh.channel("placement") as channel:
        placement = Placement(channel)
        rp, consumers = _holders(placement, 16, 1)
        stale = consumers[7]
        with ThreadPoolExecutor(16) as pool:
            outcomes = list(
                pool.map(lambda c: _release(placement, c, 5 if c == stale else None), consumers)
            )
        assert outcomes[7] == "placement.concurrent_update"
        assert outcomes[:7] + outcomes[8:] == ["released"] * 15
        assert placement.held(stale) == {rp.uuid: {"VCPU": 1}}
        assert placement.usages(rp.uuid) == {"VCPU": 1}


def test_concurrent_resizes_on_one_provider_keep_usage_exact(mesh):
    """Replaces committed together give back what each consumer held, even
    when they held the same inventory (once only one of them was given back)."""
    with mesh.channel("placement") as channel:
        placement = Placement(channel)
        rp, consumers = _holders(placement, 64, 3)
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda c: placement.claim(c, {rp.uuid: {"VCPU": 1}}, 1), consumers))
        assert placement.usages(rp.uuid) == {"VCPU": 16}
        assert all(placement.held(c) == {rp.uuid: {"VCPU": 1}} for c in consumers)


def test_batches_over_shared_providers_in_any_order_all_land(mesh, replicas):
    """Batch claims (a scheduler's, a multi-create's) spanning the same
    providers, listed in different orders, several at once through both
    replicas: with room for all, every batch lands. Each write locks its
    providers in one order (by id) before anything else; locked in the order
    a scan met them, such batches deadlocked on PostgreSQL and one of each
    pair was refused as a concurrent change after a second's wait."""
    with mesh.channel("placement") as channel:
        hosts = [Placement(channel).provider(VCPU=1000) for _ in range(24)]
    channels = [grpc.insecure_channel(address) for address in replicas]
    clients = [Placement(channel) for channel in channels]
    batches = 60

    def batch(i: int) -> str:
        chosen = random.Random(i).sample(hosts, 12)
        request = pb.BatchPutAllocationsRequest(
            requests=[
                pb.PutAllocationsRequest(
                    consumer_uuid=new_uuid(),
                    project_id="p",
                    user_id="u",
                    allocations=[
                        pb.Allocation(resource_provider_uuid=host.uuid, resources={"VCPU": 1})
                    ],
                )
                for host in chosen
            ]
        )
        client = clients[i % len(clients)]
        try:
            client.call(client.allocations.BatchPutAllocations, request)
            return "won"
        except grpc.RpcError as error:
            return reason(error)

    try:
        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(batch, range(batches)))
        assert outcomes == ["won"] * batches
        used = sum(clients[0].usages(host.uuid).get("VCPU", 0) for host in hosts)
        assert used == batches * 12
    finally:
        for channel in channels:
            channel.close()
