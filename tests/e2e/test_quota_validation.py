"""Bad quota requests are 400s naming the field, and change nothing."""

from __future__ import annotations

import pytest

from tests.harness import ADMIN
from tests.quota_client import new_project, new_uuid


@pytest.fixture
def admin(mesh):
    with mesh.rest(ADMIN) as client:
        yield client


def _claim(admin, deltas: dict, consumer: str | None = None, **fields):
    return admin.put(
        f"/v1/quota/claims/{consumer or new_uuid()}",
        json={"project_id": fields.pop("project_id", "p1"), "deltas": deltas, **fields},
    )


def _violations(response) -> dict[str, str]:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["reason"] in ("stratus.invalid_field", "stratus.unknown_field")
    return {v["field"]: v["description"] for v in error["field_violations"]}


def test_unknown_resource_names_are_refused(admin):
    violations = _violations(_claim(admin, {"cpus": 1, "cores": 1}))
    assert violations == {
        "deltas['cpus']": "must be in list [instances, cores, ram_mb, key_pairs, "
        "server_groups, server_group_members]"
    }
    limit = admin.put(f"/v1/quota/projects/{new_project()}/limits/cpus", json={"limit": 1})
    assert "resource" in _violations(limit)
    assert "resource" in _violations(admin.delete("/v1/quota/projects/p1/limits/vcpus"))


@pytest.mark.parametrize("amount", [-1, 0])
def test_deltas_are_at_least_one_giving_back_is_release(admin, quota, amount):
    project = new_project()
    quota.claim(new_uuid(), project, cores=4)
    violations = _violations(_claim(admin, {"cores": amount}, project_id=project))
    assert list(violations) == ["deltas['cores']"]
    assert quota.in_use(project) == {"cores": 4}


def test_a_claim_needs_deltas_a_project_and_a_uuid_consumer(admin):
    assert "deltas" in _violations(_claim(admin, {}))
    assert "project_id" in _violations(_claim(admin, {"cores": 1}, project_id=""))
    assert "consumer_id" in _violations(_claim(admin, {"cores": 1}, consumer="server-1"))


def test_server_group_id_goes_with_server_group_members_only(admin):
    assert "server_group_id" in _violations(_claim(admin, {"server_group_members": 1}))
    assert "server_group_id" in _violations(_claim(admin, {"cores": 1}, server_group_id=new_uuid()))
    assert "server_group_id" in _violations(
        _claim(admin, {"server_group_members": 1}, server_group_id="group-1")
    )


def test_limits_are_minus_one_or_more_and_required(admin):
    path = f"/v1/quota/projects/{new_project()}/limits/cores"
    assert _violations(admin.put(path, json={"limit": -2})) == {
        "limit": "must be greater than or equal to -1"
    }
    assert _violations(admin.put(path, json={})) == {"limit": "value is required"}
    assert "limt" in _violations(admin.put(path, json={"limt": 5}))
    assert admin.get(path.rsplit("/limits", 1)[0]).json()["resources"]["cores"]["limit"] == 20


def test_unknown_json_fields_in_a_claim_are_refused(admin):
    typo = _claim(admin, {"cores": 1}, delta={"cores": 1})
    assert typo.json()["error"]["reason"] == "stratus.unknown_field"
    assert "delta" in _violations(typo)
