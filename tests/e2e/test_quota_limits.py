"""Limits: configured defaults, per-project overrides by admins, -1 unlimited.

Through the REST edge under /v1/quota/projects/.
"""

from __future__ import annotations

import pytest

from tests.harness import ADMIN, MEMBER
from tests.placement_client import reason, rpc_error
from tests.quota_client import new_project, new_uuid

DEFAULTS = {
    "instances": 10,
    "cores": 20,
    "ram_mb": 51200,
    "key_pairs": 100,
    "server_groups": 10,
    "server_group_members": 10,
}


@pytest.fixture
def admin(mesh):
    with mesh.rest(ADMIN) as client:
        yield client


def _limits(body: dict) -> dict[str, int]:
    return {resource: q["limit"] for resource, q in body["resources"].items()}


def test_a_new_project_has_the_configured_defaults_and_no_usage(admin):
    project = new_project()
    got = admin.get(f"/v1/quota/projects/{project}")
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["project_id"] == project
    assert body["resources"] == {
        resource: {"limit": limit, "in_use": 0, "is_default": True}
        for resource, limit in DEFAULTS.items()
    }


def test_an_admin_overrides_a_limit_and_deletes_it_back_to_the_default(admin):
    project = new_project()
    path = f"/v1/quota/projects/{project}/limits/cores"
    set_ = admin.put(path, json={"limit": 64})
    assert set_.status_code == 200, set_.text
    assert set_.json()["resources"]["cores"] == {"limit": 64, "in_use": 0, "is_default": False}
    assert _limits(set_.json()) == {**DEFAULTS, "cores": 64}
    assert admin.get(f"/v1/quota/projects/{project}").json() == set_.json()
    # Another project keeps the default.
    assert _limits(admin.get(f"/v1/quota/projects/{new_project()}").json()) == DEFAULTS

    deleted = admin.delete(path)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["resources"]["cores"] == {"limit": 20, "in_use": 0, "is_default": True}
    # Deleting again (nothing set) is not an error.
    assert admin.delete(path).status_code == 200


def test_the_override_is_what_claims_are_checked_against(admin, quota):
    project = new_project()
    admin.put(f"/v1/quota/projects/{project}/limits/cores", json={"limit": 30})
    quota.claim(new_uuid(), project, cores=25)  # over the default, within the override
    refused = rpc_error(lambda: quota.claim(new_uuid(), project, cores=6))
    assert "limit 30, in use 25, requested 6" in refused.details()


def test_minus_one_is_unlimited(admin, quota):
    project = new_project()
    admin.put(f"/v1/quota/projects/{project}/limits/ram_mb", json={"limit": -1})
    quota.claim(new_uuid(), project, ram_mb=10_000_000)
    quota.claim(new_uuid(), project, ram_mb=10_000_000)
    ram = admin.get(f"/v1/quota/projects/{project}").json()["resources"]["ram_mb"]
    assert ram == {"limit": -1, "in_use": 20_000_000, "is_default": False}


def test_zero_forbids_any_claim(admin, quota):
    project = new_project()
    admin.put(f"/v1/quota/projects/{project}/limits/key_pairs", json={"limit": 0})
    assert reason(rpc_error(lambda: quota.claim(new_uuid(), project, key_pairs=1))) == (
        "quota.exceeded"
    )


def test_a_limit_under_usage_takes_nothing_back_but_stops_new_claims(admin, quota):
    project = new_project()
    held = [new_uuid() for _ in range(3)]
    for server in held:
        quota.claim(server, project, instances=1)
    lowered = admin.put(f"/v1/quota/projects/{project}/limits/instances", json={"limit": 2})
    assert lowered.json()["resources"]["instances"] == {
        "limit": 2,
        "in_use": 3,
        "is_default": False,
    }
    refused = rpc_error(lambda: quota.claim(new_uuid(), project, instances=1))
    assert "instances: limit 2, in use 3, requested 1" in refused.details()
    quota.release(held[0])
    quota.release(held[1])
    quota.claim(new_uuid(), project, instances=1)
    assert quota.in_use(project) == {"instances": 2}


def test_only_admins_set_and_delete_limits(mesh):
    path = f"/v1/quota/projects/{MEMBER['x-stratus-project']}/limits/cores"
    with mesh.rest(MEMBER) as member:
        put = member.put(path, json={"limit": 1000})
        assert put.status_code == 403
        assert put.json()["error"]["reason"] == "stratus.admin_required"
        assert member.delete(path).status_code == 403
        own = member.get(f"/v1/quota/projects/{MEMBER['x-stratus-project']}").json()
    assert own["resources"]["cores"]["is_default"] is True
