"""Going over a limit: what a caller is told, over gRPC and at the REST edge (429)."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

from tests.harness import ADMIN
from tests.placement_client import reason, rpc_error
from tests.quota_client import new_project, new_uuid


def _field_violations(error: grpc.RpcError) -> dict[str, str]:
    status = status_pb2.Status.FromString(
        dict(error.trailing_metadata())["grpc-status-details-bin"]
    )
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return {v.field: v.description for v in bad.field_violations}
    return {}


def test_exceeded_names_resource_limit_usage_and_ask(quota):
    project = new_project()  # default cores limit: 20
    quota.claim(new_uuid(), project, cores=18)
    refused = rpc_error(lambda: quota.claim(new_uuid(), project, cores=4))
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason(refused) == "quota.exceeded"
    assert "quota exceeded for cores: limit 20, in use 18, requested 4" in refused.details()
    assert project in refused.details()
    assert _field_violations(refused) == {"deltas['cores']": "limit 20, in use 18, requested 4"}
    assert quota.in_use(project) == {"cores": 18}


def test_every_resource_over_its_limit_is_named(quota):
    project = new_project()
    quota.set_limit(project, "ram_mb", 1024)
    refused = rpc_error(
        lambda: quota.claim(new_uuid(), project, instances=11, cores=1, ram_mb=2048)
    )
    assert _field_violations(refused) == {
        "deltas['instances']": "limit 10, in use 0, requested 11",
        "deltas['ram_mb']": "limit 1024, in use 0, requested 2048",
    }
    assert "instances: limit 10" in refused.details()
    assert "ram_mb: limit 1024" in refused.details()
    assert quota.in_use(project) == {}


def test_exceeded_is_429_at_the_edge_with_the_json_error_shape(mesh, quota):
    project = new_project()
    quota.set_limit(project, "instances", 1)
    with mesh.rest(ADMIN) as admin:
        first = admin.put(
            f"/v1/quota/claims/{new_uuid()}",
            json={"project_id": project, "deltas": {"instances": 1, "cores": 2}},
        )
        assert first.status_code == 200, first.text
        assert first.json()["deltas"] == {"instances": 1, "cores": 2}

        refused = admin.put(
            f"/v1/quota/claims/{new_uuid()}",
            json={"project_id": project, "deltas": {"instances": 1, "cores": 2}},
        )
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["code"] == 429
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert error["reason"] == "quota.exceeded"
    assert error["message"].startswith(
        "quota exceeded for instances: limit 1, in use 1, requested 1"
    )
    assert error["request_id"]
    assert error["field_violations"] == [
        {"field": "deltas['instances']", "description": "limit 1, in use 1, requested 1"}
    ]
    assert quota.in_use(project) == {"instances": 1, "cores": 2}
