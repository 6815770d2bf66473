"""Batch claims: a multi-create's servers claimed in one call, all or nothing.

Every test runs twice: quota on SQLite, and on PostgreSQL.
"""

from __future__ import annotations

import grpc
from stratus.quota.v1 import quota_pb2 as pb

from services.common.status_details import from_status
from tests.placement_client import reason, rpc_error
from tests.quota_client import batch, new_project, new_uuid


def test_a_batch_counts_each_consumer_and_each_releases_its_own(quota):
    project = new_project()
    servers = [new_uuid() for _ in range(3)]
    claims = quota.claim_batch(servers, project, instances=1, cores=2)
    assert [c.consumer_id for c in claims] == servers
    assert quota.in_use(project) == {"instances": 3, "cores": 6}
    quota.release(servers[0])
    assert quota.in_use(project) == {"instances": 2, "cores": 4}


def test_a_batch_over_the_limit_claims_nothing_and_names_the_sum(quota):
    project = new_project()
    quota.claim(new_uuid(), project, instances=8)  # the default limit is 10
    error = rpc_error(
        lambda: quota.claim_batch([new_uuid() for _ in range(3)], project, instances=1)
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason(error) == "quota.exceeded"
    assert "limit 10, in use 8, requested 3" in error.details()
    assert quota.in_use(project) == {"instances": 8}


def test_a_repeated_batch_counts_once_and_answers_the_same(quota):
    project = new_project()
    servers = [new_uuid(), new_uuid()]
    first = quota.claim_batch(servers, project, instances=1)
    # A retry that overlaps the first: the held claim is answered, the new one counted.
    again = quota.claim_batch([*servers, new_uuid()], project, instances=1)
    assert again[:2] == first
    assert quota.in_use(project) == {"instances": 3}


def test_a_batch_of_two_projects_is_refused(quota):
    error = rpc_error(
        lambda: quota.stub.BatchClaim(
            quota_batch(
                [(new_uuid(), new_project()), (new_uuid(), new_project())],
            ),
            metadata=quota.metadata,
            timeout=30,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "same project_id" in error.details()


def quota_batch(consumers_and_projects) -> pb.BatchClaimRequest:
    return pb.BatchClaimRequest(
        claims=[
            pb.ClaimRequest(consumer_id=c, project_id=p, deltas={"instances": 1})
            for c, p in consumers_and_projects
        ]
    )


def test_claim_batches_decides_each_batch_alone(quota):
    """api_gateway's creates that arrive together: one call, one outcome each."""
    fits, full, other = new_project(), new_project(), new_project()
    quota.set_limit(full, "instances", 2)
    asked = {
        "fits": [new_uuid() for _ in range(3)],
        "too_many": [new_uuid() for _ in range(3)],
        "other": [new_uuid()],
    }
    results = quota.claim_batches(
        [
            batch(asked["fits"], fits, instances=1, cores=1),
            batch(asked["too_many"], full, instances=1),
            batch(asked["other"], other, instances=1, ram_mb=512),
        ]
    )
    placed, refused, alone = results
    assert [c.consumer_id for c in placed.claimed.claims] == asked["fits"]
    assert refused.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    error = from_status(refused.error)
    assert error.code == "quota.exceeded"
    assert error.field_violations[0].description == "limit 2, in use 0, requested 3"
    assert [c.consumer_id for c in alone.claimed.claims] == asked["other"]
    assert quota.in_use(fits) == {"instances": 3, "cores": 3}
    assert quota.in_use(full) == {}
    assert quota.in_use(other) == {"instances": 1, "ram_mb": 512}


def test_claim_batches_answers_a_retry_and_counts_it_once(quota):
    project = new_project()
    servers = [new_uuid(), new_uuid()]
    first = quota.claim_batches([batch(servers, project, instances=1)])
    again = quota.claim_batches(
        [batch(servers, project, instances=1), batch([new_uuid()], project, instances=1)]
    )
    assert again[0].claimed.claims == first[0].claimed.claims
    assert again[1].HasField("claimed")
    assert quota.in_use(project) == {"instances": 3}


def test_claim_batches_refuses_a_bad_batch_alone(quota):
    project = new_project()
    mixed = pb.BatchClaimRequest(
        claims=[
            pb.ClaimRequest(consumer_id=new_uuid(), project_id=project, deltas={"instances": 1}),
            pb.ClaimRequest(consumer_id=new_uuid(), project_id="another", deltas={"instances": 1}),
        ]
    )
    good, bad = quota.claim_batches([batch([new_uuid()], project, instances=1), mixed])
    assert good.HasField("claimed")
    assert from_status(bad.error).code == "stratus.invalid_field"
    assert quota.in_use(project) == {"instances": 1}
