"""Tenants are isolated: another project's server is "not found", never "forbidden"."""

from __future__ import annotations

from tests.compute_client import create, fake_flavor, member_of, wait
from tests.harness import ADMIN


def test_another_project_cannot_list_see_or_touch_a_server(sqlite_mesh):
    alice, bob = member_of(user="alice"), member_of(user="bob")
    with sqlite_mesh.rest(alice) as a, sqlite_mesh.rest(bob) as b:
        (server,) = create(a, fake_flavor(sqlite_mesh))
        wait(a, server["id"])
        sid = server["id"]
        assert b.get("/v1/servers").json().get("servers", []) == []
        for reply in (
            b.get(f"/v1/servers/{sid}"),
            b.get(f"/v1/servers/{sid}/actions"),
            b.post(f"/v1/servers/{sid}:stop", json={}),
            b.post(f"/v1/servers/{sid}:reboot", json={"type": "HARD"}),
            b.patch(f"/v1/servers/{sid}", json={"name": "mine"}, params={"update_mask": "name"}),
            b.delete(f"/v1/servers/{sid}"),
        ):
            assert reply.status_code == 404, reply.text
            assert reply.json()["error"]["reason"] == "compute.server_not_found"
        still = a.get(f"/v1/servers/{sid}").json()
    assert (still["status"], still["name"], still["task_state"]) == ("ACTIVE", "web", "")


def test_admins_see_every_project_and_filter_by_host(sqlite_mesh):
    with sqlite_mesh.rest(member_of()) as client:
        (server,) = create(client, fake_flavor(sqlite_mesh))
        host = wait(client, server["id"])["host"]
    with sqlite_mesh.rest(ADMIN) as admin:
        own = admin.get("/v1/servers").json().get("servers", [])
        everyone = admin.get(
            "/v1/servers", params={"all_projects": "true", "host": host, "page_size": 1000}
        ).json()["servers"]
    assert server["id"] not in {s["id"] for s in own}
    assert server["id"] in {s["id"] for s in everyone}
    assert {s["host"] for s in everyone} == {host}


def test_list_pages_and_filters(sqlite_mesh):
    with sqlite_mesh.rest(member_of()) as client:
        created = create(client, fake_flavor(sqlite_mesh), name="pg", min_count=5, max_count=5)
        seen, token = [], ""
        while True:
            page = client.get("/v1/servers", params={"page_size": 2, "page_token": token}).json()
            seen += [s["id"] for s in page["servers"]]
            token = page.get("next_page_token", "")
            if not token:
                break
        named = client.get("/v1/servers", params={"name": "pg-3"}).json()["servers"]
        bad = client.get("/v1/servers", params={"status": "SLEEPING"})
    assert sorted(seen) == sorted(s["id"] for s in created)
    assert [s["name"] for s in named] == ["pg-3"]
    assert bad.status_code == 400


def test_a_server_can_be_renamed_and_its_metadata_replaced(sqlite_mesh):
    with sqlite_mesh.rest(member_of()) as client:
        (server,) = create(client, fake_flavor(sqlite_mesh), metadata={"a": "1"})
        reply = client.patch(
            f"/v1/servers/{server['id']}",
            json={"name": "renamed", "metadata": {"b": "2"}},
            params={"update_mask": "name,metadata"},
        )
        refused = client.patch(
            f"/v1/servers/{server['id']}",
            json={"host": "elsewhere"},
            params={"update_mask": "host"},
        )
    assert (reply.json()["name"], reply.json()["metadata"]) == ("renamed", {"b": "2"})
    assert refused.status_code == 400


def test_bad_create_requests_name_the_problem(sqlite_mesh):
    with sqlite_mesh.rest(member_of()) as client:
        flavor = fake_flavor(sqlite_mesh)
        cases = {
            "compute.flavor_not_found": {"name": "x", "flavor": "no-such", "image_ref": "cirros"},
            "compute.key_pair_not_found": {
                "name": "x",
                "flavor": flavor,
                "image_ref": "cirros",
                "key_name": "nope",
            },
            "compute.server_group_not_found": {
                "name": "x",
                "flavor": flavor,
                "image_ref": "cirros",
                "server_group_id": "2f1f8a0e-0000-4000-8000-000000000000",
            },
        }
        for reason, server in cases.items():
            reply = client.post("/v1/servers", json={"server": server})
            assert reply.status_code == 404, reply.text
            assert reply.json()["error"]["reason"] == reason
        missing_name = client.post(
            "/v1/servers", json={"server": {"flavor": flavor, "image_ref": "cirros"}}
        )
        assert missing_name.status_code == 400
        assert client.get("/v1/servers").json().get("servers", []) == []
