"""Racing claims at the edge of a limit, through two quota replicas on one database.

Whatever the interleaving: usage never passes the limit, exactly the claims
that fit succeed, a consumer retried concurrently counts once, and usage is
always the sum of the live claims.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from tests.placement_client import reason
from tests.quota_client import Quota, new_project, new_uuid

CLAIMERS = 40
LIMIT = 25


@pytest.fixture(scope="module")
def replicas(mesh):
    return [mesh.layout.address("quota"), mesh.start_replica("quota")]


def _race(replicas, calls) -> list:
    """Run calls(client, i) for every i at once, alternating replicas; the outcomes."""
    channels = [grpc.insecure_channel(address) for address in replicas]
    clients = [Quota(channel) for channel in channels]

    def attempt(i: int):
        try:
            return calls(clients[i % len(clients)], i)
        except grpc.RpcError as error:
            return reason(error)

    try:
        with ThreadPoolExecutor(CLAIMERS) as pool:
            return list(pool.map(attempt, range(CLAIMERS)))
    finally:
        for channel in channels:
            channel.close()


def test_exactly_the_claims_that_fit_succeed(quota, replicas):
    project = new_project()
    quota.set_limit(project, "cores", LIMIT)
    consumers = [new_uuid() for _ in range(CLAIMERS)]
    outcomes = _race(replicas, lambda q, i: q.claim(consumers[i], project, cores=1))
    winners = [c for c, o in zip(consumers, outcomes, strict=True) if not isinstance(o, str)]
    assert len(winners) == LIMIT, outcomes
    assert outcomes.count("quota.exceeded") == CLAIMERS - LIMIT, outcomes
    assert quota.in_use(project) == {"cores": LIMIT}
    # Each winner holds its claim (a repeat answers it), each loser holds nothing.
    for consumer in winners:
        assert quota.claim(consumer, project, cores=1).consumer_id == consumer
    for consumer in winners:
        quota.release(consumer)
    assert quota.in_use(project) == {}


def test_a_claim_spanning_resources_is_all_or_nothing_under_contention(quota, replicas):
    project = new_project()
    quota.set_limit(project, "cores", 100)
    quota.set_limit(project, "ram_mb", 6 * 512)
    outcomes = _race(
        replicas, lambda q, i: q.claim(new_uuid(), project, instances=1, cores=1, ram_mb=512)
    )
    assert outcomes.count("quota.exceeded") == CLAIMERS - 6, outcomes
    # Losers took cores and instances before ram_mb refused them: all undone.
    assert quota.in_use(project) == {"instances": 6, "cores": 6, "ram_mb": 3072}


def test_one_consumer_retried_concurrently_counts_once(quota, replicas):
    project = new_project()
    server = new_uuid()
    answers = _race(replicas, lambda q, i: q.claim(server, project, instances=1, cores=2))
    assert all(not isinstance(answer, str) for answer in answers), answers
    assert len({answer.SerializeToString(deterministic=True) for answer in answers}) == 1
    assert quota.in_use(project) == {"instances": 1, "cores": 2}
    quota.release(server)
    assert quota.in_use(project) == {}


def test_usage_is_the_sum_of_live_claims_while_claims_and_releases_race(quota, replicas):
    project = new_project()
    quota.set_limit(project, "cores", LIMIT)
    held = [new_uuid() for _ in range(20)]
    for consumer in held:
        quota.claim(consumer, project, cores=1)
    newcomers = [new_uuid() for _ in range(CLAIMERS)]

    def release_or_claim(q: Quota, i: int):
        # Even workers release the held claims, odd ones try new claims.
        if i % 2 == 0:
            q.release(held[i // 2])
            return "released"
        return q.claim(newcomers[i], project, cores=1)

    outcomes = _race(replicas, release_or_claim)
    assert outcomes[0::2] == ["released"] * (CLAIMERS // 2)
    claims = outcomes[1::2]
    assert all(not isinstance(o, str) or o == "quota.exceeded" for o in claims), claims
    live = [newcomers[i] for i in range(1, CLAIMERS, 2) if not isinstance(outcomes[i], str)]
    # 20 held + 20 asked > 25: how many newcomers fit depends on the
    # interleaving, but at least the 5 free from the start do.
    assert 5 <= len(live) <= 20
    assert quota.in_use(project) == {"cores": len(live)}
    for consumer in live:
        quota.release(consumer)
    assert quota.in_use(project) == {}
