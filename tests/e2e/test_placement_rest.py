"""Placement's admin REST surface through Envoy under /v1/placement/."""

from __future__ import annotations

import uuid

import pytest

from tests.harness import ADMIN, MEMBER
from tests.placement_client import Placement

BASE = "/v1/placement/resource_providers"


@pytest.fixture
def admin(mesh):
    with mesh.rest(ADMIN) as client:
        yield client


def test_provider_inventory_and_candidates_over_rest(admin):
    name = f"host-{uuid.uuid4().hex[:8]}"
    created = admin.post(BASE, json={"name": name})
    assert created.status_code == 200, created.text
    provider = created.json()
    assert provider["generation"] == 0 and provider["root_uuid"] == provider["uuid"]

    inventory = admin.put(
        f"{BASE}/{provider['uuid']}/inventories",
        json={
            "resource_provider_generation": 0,
            "inventories": [
                {"resource_class": "VCPU", "total": 16, "allocation_ratio": 4.0},
                {"resource_class": "MEMORY_MB", "total": 65536, "reserved": 512},
            ],
        },
    )
    assert inventory.status_code == 200, inventory.text
    assert inventory.json()["resource_provider_generation"] == 1

    one = admin.put(
        f"{BASE}/{provider['uuid']}/inventories/DISK_GB",
        json={"resource_provider_generation": 1, "inventory": {"total": 500}},
    )
    assert one.status_code == 200, one.text
    assert {i["resource_class"] for i in one.json()["inventories"]} == {
        "VCPU",
        "MEMORY_MB",
        "DISK_GB",
    }

    aggregate = str(uuid.uuid4())
    admin.put(
        f"{BASE}/{provider['uuid']}/aggregates",
        json={"resource_provider_generation": 2, "aggregates": [aggregate]},
    )
    found = admin.post(
        "/v1/placement/allocation_candidates:search",
        json={
            "resources": {"VCPU": 8, "MEMORY_MB": 2048},
            "member_of": [aggregate],
        },
    )
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["allocation_requests"] == [
        {
            "allocations": [
                {
                    "resource_provider_uuid": provider["uuid"],
                    "resources": {"VCPU": 8, "MEMORY_MB": 2048},
                }
            ]
        }
    ]
    summary = body["provider_summaries"][0]
    assert summary["resources"]["VCPU"] == {"capacity": 64, "used": 0}

    # Claims are the mesh's own business (scheduler, api_gateway): not at the edge.
    consumer = str(uuid.uuid4())
    claimed = admin.put(
        f"/v1/placement/consumers/{consumer}/allocations",
        json={
            "project_id": "p1",
            "user_id": "u1",
            "allocations": body["allocation_requests"][0]["allocations"],
        },
    )
    assert claimed.status_code == 404, claimed.text
    assert admin.delete(f"/v1/placement/consumers/{consumer}/allocations").status_code == 404
    batch = admin.post("/v1/placement/allocations:batchDelete", json={"consumer_uuids": [consumer]})
    assert batch.status_code == 404, batch.text
    assert admin.get(f"/v1/placement/consumers/{consumer}/allocations").status_code == 200
    usages = admin.get("/v1/placement/usages", params={"project_id": "p1"})
    assert usages.status_code == 200


def test_allocations_of_several_consumers_in_one_request(mesh, admin):
    with mesh.channel("placement") as channel:
        placement = Placement(channel)
        provider = placement.provider(VCPU=4)
        consumer, unknown = str(uuid.uuid4()), str(uuid.uuid4())
        placement.claim(consumer, {provider.uuid: {"VCPU": 2}})
    found = admin.post(
        "/v1/placement/allocations:batchGet", json={"consumer_uuids": [unknown, consumer]}
    )
    assert found.status_code == 200, found.text
    (held,) = found.json()["consumers"]
    assert held["consumer_uuid"] == consumer and held["consumer_generation"] == 1
    assert held["allocations"] == [
        {"resource_provider_uuid": provider.uuid, "resources": {"VCPU": 2}}
    ]
    bad = admin.post(
        "/v1/placement/allocations:batchGet", json={"consumer_uuids": [consumer, "not-a-uuid"]}
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["field_violations"][0]["field"] == "consumer_uuids[1]"
    typo = admin.post("/v1/placement/allocations:batchGet", json={"consumer_uuid": [consumer]})
    assert typo.status_code == 400


def test_stale_generation_is_a_409_with_a_stable_code(admin):
    provider = admin.post(BASE, json={"name": f"host-{uuid.uuid4().hex[:8]}"}).json()
    admin.put(
        f"{BASE}/{provider['uuid']}/traits",
        json={"resource_provider_generation": 0, "traits": ["HW_CPU_X86_AVX2"]},
    )
    stale = admin.put(
        f"{BASE}/{provider['uuid']}/traits", json={"resource_provider_generation": 0, "traits": []}
    )
    assert stale.status_code == 409
    assert stale.json()["error"]["reason"] == "placement.concurrent_update"
    assert admin.get(f"{BASE}/{provider['uuid']}/traits").json()["traits"] == ["HW_CPU_X86_AVX2"]


def test_unknown_fields_and_bad_values_are_400(admin):
    provider = admin.post(BASE, json={"name": f"host-{uuid.uuid4().hex[:8]}"}).json()
    typo = admin.put(
        f"{BASE}/{provider['uuid']}/inventories",
        json={
            "resource_provider_generation": 0,
            "inventories": [{"resource_class": "VCPU", "totl": 4}],
        },
    )
    assert typo.status_code == 400
    assert typo.json()["error"]["field_violations"][0]["field"] == "inventories[0].totl"
    negative = admin.put(
        f"{BASE}/{provider['uuid']}/inventories",
        json={
            "resource_provider_generation": 0,
            "inventories": [{"resource_class": "VCPU", "total": -4}],
        },
    )
    assert negative.status_code == 400
    assert admin.get(f"{BASE}/{provider['uuid']}/inventories").json()["inventories"] == []
    assert admin.get(f"{BASE}/not-a-uuid").status_code == 400
    assert (
        admin.get(f"{BASE}/{uuid.uuid4()}").json()["error"]["reason"]
        == "placement.provider_not_found"
    )


def test_members_are_refused(mesh):
    with mesh.rest(MEMBER) as member:
        assert member.get(BASE).status_code == 403
        batch = {"consumer_uuids": [str(uuid.uuid4())]}
        assert member.post("/v1/placement/allocations:batchGet", json=batch).status_code == 403
