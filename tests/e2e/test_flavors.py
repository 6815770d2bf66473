"""Flavors through the real REST edge (Envoy -> api_gateway -> database).

Every test runs twice: api_gateway on SQLite, and on PostgreSQL.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from stratus.compute.v1 import flavors_pb2, flavors_pb2_grpc

from tests.harness import ADMIN, MEMBER


def unique(prefix: str = "f") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def all_flavor_names(client) -> list[str]:
    names, token = [], ""
    while True:
        page = client.get("/v1/flavors", params={"page_size": 1000, "page_token": token}).json()
        names += [f["name"] for f in page["flavors"]]
        token = page["next_page_token"]
        if not token:
            return names


def test_admin_creates_and_member_reads(mesh):
    name = unique()
    with mesh.rest(ADMIN) as admin, mesh.rest(MEMBER) as member:
        created = admin.post(
            "/v1/flavors",
            json={
                "name": name,
                "vcpus": 2,
                "ram_mb": 4096,
                "disk_gb": 40,
                "extra_specs": {"trait:HW_CPU_X86_AVX2": "required", "hw:cpu_policy": "dedicated"},
            },
        )
        assert created.status_code == 200, created.text
        flavor = created.json()
        uuid.UUID(flavor["id"])
        assert flavor["name"] == name
        assert (flavor["vcpus"], flavor["ram_mb"], flavor["disk_gb"]) == (2, 4096, 40)
        assert flavor["extra_specs"] == {
            "trait:HW_CPU_X86_AVX2": "required",
            "hw:cpu_policy": "dedicated",
        }
        assert flavor["is_public"] is True
        assert flavor["create_time"].endswith("Z")

        got = member.get(f"/v1/flavors/{flavor['id']}")
        assert got.status_code == 200
        assert got.json() == flavor
        assert name in all_flavor_names(member)


def test_optional_fields_take_their_defaults(mesh):
    with mesh.rest(ADMIN) as admin:
        flavor = admin.post(
            "/v1/flavors", json={"name": unique(), "vcpus": 1, "ram_mb": 256}
        ).json()
    assert flavor["disk_gb"] == 0
    assert flavor["extra_specs"] == {}
    assert flavor["is_public"] is True


def test_private_flavor_is_invisible_to_members(mesh):
    name = unique("private")
    with mesh.rest(ADMIN) as admin, mesh.rest(MEMBER) as member:
        flavor = admin.post(
            "/v1/flavors", json={"name": name, "vcpus": 1, "ram_mb": 256, "is_public": False}
        ).json()
        assert flavor["is_public"] is False
        assert member.get(f"/v1/flavors/{flavor['id']}").status_code == 404
        assert name not in all_flavor_names(member)
        assert admin.get(f"/v1/flavors/{flavor['id']}").status_code == 200
        assert name in all_flavor_names(admin)


def test_delete_removes_the_flavor(mesh):
    with mesh.rest(ADMIN) as admin:
        flavor = admin.post(
            "/v1/flavors", json={"name": unique(), "vcpus": 1, "ram_mb": 256}
        ).json()
        deleted = admin.delete(f"/v1/flavors/{flavor['id']}")
        assert deleted.status_code == 200
        assert deleted.json() == {}
        assert admin.get(f"/v1/flavors/{flavor['id']}").status_code == 404
        again = admin.delete(f"/v1/flavors/{flavor['id']}")
        assert again.status_code == 404
        assert again.json()["error"]["reason"] == "compute.flavor_not_found"


def test_members_cannot_create_or_delete(mesh):
    name = unique()
    with mesh.rest(ADMIN) as admin, mesh.rest(MEMBER) as member:
        denied = member.post("/v1/flavors", json={"name": name, "vcpus": 1, "ram_mb": 256})
        assert denied.status_code == 403
        assert denied.json()["error"]["reason"] == "stratus.admin_required"
        assert name not in all_flavor_names(admin)

        flavor = admin.post("/v1/flavors", json={"name": name, "vcpus": 1, "ram_mb": 256}).json()
        assert member.delete(f"/v1/flavors/{flavor['id']}").status_code == 403
        assert admin.get(f"/v1/flavors/{flavor['id']}").status_code == 200


def test_a_token_without_roles_is_not_admin(mesh):
    with mesh.rest({"x-stratus-project": "p", "x-stratus-user": "u"}) as nobody:
        assert (
            nobody.post("/v1/flavors", json={"name": unique(), "vcpus": 1, "ram_mb": 1}).status_code
            == 403
        )


def test_duplicate_name_conflicts(mesh):
    name = unique()
    with mesh.rest(ADMIN) as admin:
        assert (
            admin.post("/v1/flavors", json={"name": name, "vcpus": 1, "ram_mb": 256}).status_code
            == 200
        )
        again = admin.post("/v1/flavors", json={"name": name, "vcpus": 4, "ram_mb": 512})
        assert again.status_code == 409
        error = again.json()["error"]
        assert error["reason"] == "compute.flavor_exists"
        assert name in error["message"]
        assert all_flavor_names(admin).count(name) == 1


def test_concurrent_creates_of_one_name_exactly_one_wins(mesh):
    name = unique("race")

    def create(_):
        with mesh.rest(ADMIN) as admin:
            return admin.post(
                "/v1/flavors", json={"name": name, "vcpus": 1, "ram_mb": 256}
            ).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(create, range(8)))
    assert codes == [200] + [409] * 7
    with mesh.rest(ADMIN) as admin:
        assert all_flavor_names(admin).count(name) == 1


VALID = {"vcpus": 1, "ram_mb": 256}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", **VALID}, "flavor.name"),
        ({"name": "has space", **VALID}, "flavor.name"),
        ({"name": "x" * 256, **VALID}, "flavor.name"),
        ({"vcpus": 1, "ram_mb": 256}, "flavor.name"),
        ({"name": "ok", "vcpus": 0, "ram_mb": 256}, "flavor.vcpus"),
        ({"name": "ok", "vcpus": 5000, "ram_mb": 256}, "flavor.vcpus"),
        ({"name": "ok", "vcpus": 1, "ram_mb": 0}, "flavor.ram_mb"),
        ({"name": "ok", "vcpus": 1}, "flavor.ram_mb"),
        ({"name": "ok", **VALID, "disk_gb": -1}, "flavor.disk_gb"),
        ({"name": "ok", **VALID, "extra_specs": {"bad key": "x"}}, "flavor.extra_specs['bad key']"),
        ({"name": "ok", **VALID, "extra_specs": {"k": "v" * 256}}, "flavor.extra_specs['k']"),
        (
            {"name": "ok", **VALID, "extra_specs": {"trait:HW_CPU_X86_AVX2": "maybe"}},
            "flavor.extra_specs['trait:HW_CPU_X86_AVX2']",
        ),
        (
            {"name": "ok", **VALID, "extra_specs": {"trait:lower": "required"}},
            "flavor.extra_specs['trait:lower']",
        ),
    ],
)
def test_invalid_fields_are_named_and_nothing_is_created(mesh, body, field):
    body = {**body}
    if body.get("name") == "ok":
        body["name"] = unique("invalid")
    with mesh.rest(ADMIN) as admin:
        before = all_flavor_names(admin)
        response = admin.post("/v1/flavors", json=body)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["status"] == "INVALID_ARGUMENT"
        assert field in [v["field"] for v in error["field_violations"]]
        assert field in error["message"]
        assert all_flavor_names(admin) == before


def test_wrong_json_type_is_rejected(mesh):
    with mesh.rest(ADMIN) as admin:
        response = admin.post("/v1/flavors", json={"name": unique(), "vcpus": "two", "ram_mb": 256})
    assert response.status_code == 400
    assert "vcpus" in response.json()["error"]["message"]


def test_pages_cover_every_flavor_once_in_name_order(mesh):
    prefix = unique("page")
    with mesh.rest(ADMIN) as admin:
        for i in range(5):
            admin.post("/v1/flavors", json={"name": f"{prefix}-{i}", "vcpus": 1, "ram_mb": 256})
        seen, token, pages = [], "", 0
        while True:
            page = admin.get("/v1/flavors", params={"page_size": 2, "page_token": token}).json()
            assert len(page["flavors"]) <= 2
            seen += [f["name"] for f in page["flavors"]]
            token, pages = page["next_page_token"], pages + 1
            if not token:
                break
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen))
    assert [n for n in seen if n.startswith(prefix)] == [f"{prefix}-{i}" for i in range(5)]
    assert pages >= 3


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page_size": 1001}, "page_size"),
        ({"page_size": -1}, "page_size"),
        ({"page_token": "garbage!"}, None),
    ],
)
def test_bad_paging_arguments(mesh, params, field):
    with mesh.rest(MEMBER) as member:
        response = member.get("/v1/flavors", params=params)
    assert response.status_code == 400
    error = response.json()["error"]
    if field:
        assert error["field_violations"][0]["field"] == field
    else:
        assert error["reason"] == "stratus.invalid_page_token"


def test_unknown_and_malformed_ids(mesh):
    with mesh.rest(MEMBER) as member:
        missing = member.get(f"/v1/flavors/{uuid.uuid4()}")
        assert missing.status_code == 404
        assert missing.json()["error"]["reason"] == "compute.flavor_not_found"
        malformed = member.get("/v1/flavors/not-a-uuid")
        assert malformed.status_code == 400
        assert malformed.json()["error"]["field_violations"][0]["field"] == "id"


def test_grpc_errors_carry_reason_and_field_violations(mesh):
    """Orchestration tools calling gRPC directly get the same stable codes as REST clients."""
    with mesh.channel() as channel:
        stub = flavors_pb2_grpc.FlavorServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.CreateFlavor(
                flavors_pb2.CreateFlavorRequest(
                    flavor=flavors_pb2.Flavor(name="ok", vcpus=0, ram_mb=1)
                ),
                metadata=tuple(ADMIN.items()),
            )
    error = raised.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = dict(error.trailing_metadata())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    info, bad_request = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    status.details[0].Unpack(info)
    status.details[1].Unpack(bad_request)
    assert info.reason == "stratus.invalid_field"
    assert [v.field for v in bad_request.field_violations] == ["flavor.vcpus"]
