"""Who reads which project's quota: members their own, admins and services any.

A member asking for another project is refused (403, quota.project_forbidden)
rather than told "not found": every project id has a quota, the defaults.
"""

from __future__ import annotations

from tests.harness import ADMIN, MEMBER
from tests.quota_client import new_project, new_uuid

OWN = MEMBER["x-stratus-project"]


def test_a_member_reads_its_own_project_with_its_usage(mesh, quota):
    server = new_uuid()
    quota.claim(server, OWN, instances=1, cores=2)
    try:
        with mesh.rest(MEMBER) as member:
            got = member.get(f"/v1/quota/projects/{OWN}")
        assert got.status_code == 200, got.text
        cores = got.json()["resources"]["cores"]
        assert cores == {"limit": 20, "in_use": 2, "is_default": True}
    finally:
        quota.release(server)


def test_a_member_is_refused_another_project(mesh):
    with mesh.rest(MEMBER) as member:
        other = member.get(f"/v1/quota/projects/{new_project()}")
    assert other.status_code == 403
    error = other.json()["error"]
    assert error["reason"] == "quota.project_forbidden"
    assert OWN in error["message"]


def test_a_caller_without_a_project_reads_none(mesh):
    with mesh.rest({"x-stratus-roles": "member"}) as anonymous:
        assert anonymous.get(f"/v1/quota/projects/{OWN}").status_code == 403


def test_admins_and_services_read_any_project(mesh, quota):
    project = new_project()
    quota.claim(new_uuid(), project, key_pairs=3)
    with mesh.rest(ADMIN) as admin:
        got = admin.get(f"/v1/quota/projects/{project}")
    assert got.status_code == 200
    assert got.json()["resources"]["key_pairs"]["in_use"] == 3
    assert quota.in_use(project) == {"key_pairs": 3}  # the service role, over gRPC


def test_members_cannot_claim_or_release_over_rest(mesh):
    with mesh.rest(MEMBER) as member:
        claim = member.put(
            f"/v1/quota/claims/{new_uuid()}", json={"project_id": OWN, "deltas": {"cores": 1}}
        )
        assert claim.status_code == 403
        assert claim.json()["error"]["reason"] == "stratus.role_required"
        assert member.delete(f"/v1/quota/claims/{new_uuid()}").status_code == 403
        batch = member.post("/v1/quota/claims:batchRelease", json={"consumer_ids": [new_uuid()]})
        assert batch.status_code == 403, batch.text


def test_admins_release_in_batch_over_rest(mesh, quota):
    project = new_project()
    first, second = new_uuid(), new_uuid()
    quota.claim(first, project, cores=2)
    quota.claim(second, project, cores=1)
    with mesh.rest(ADMIN) as admin:
        released = admin.post("/v1/quota/claims:batchRelease", json={"consumer_ids": [first]})
        assert released.status_code == 200, released.text
        bad = admin.post("/v1/quota/claims:batchRelease", json={"consumer_ids": ["nope"]})
    assert bad.status_code == 400
    assert "consumer_ids[0]" in bad.text
    assert quota.in_use(project) == {"cores": 1}
