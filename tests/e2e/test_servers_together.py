"""Requests that arrive together are written together, yet each keeps its own
outcome. Creates share one record transaction and one quota call: one over
quota fails alone, and the others boot. Deletes share one transaction: a
repeated delete changes nothing, another project's is not found.

Real Envoy, api_gateway, quota, scheduler, placement, etcd and fake hosts.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.compute_client import create, fake_flavor, member_of, wait

CREATES = 12


def _post(mesh, who: dict, flavor: str, count: int):
    with mesh.rest(who) as client:
        return client.post(
            "/v1/servers",
            json={
                "server": {"name": "together", "flavor": flavor, "image_ref": "cirros"},
                "min_count": count,
                "max_count": count,
            },
        )


def test_concurrent_creates_each_get_their_own_answer(mesh):
    flavor = fake_flavor(mesh)
    projects = [member_of() for _ in range(CREATES)]
    # Every third create asks for more than the default limit of 10 instances.
    counts = [11 if i % 3 == 0 else 2 for i in range(CREATES)]
    with ThreadPoolExecutor(CREATES) as pool:
        replies = list(
            pool.map(lambda i: _post(mesh, projects[i], flavor, counts[i]), range(CREATES))
        )
    for who, count, reply in zip(projects, counts, replies, strict=True):
        with mesh.rest(who) as client:
            listed = client.get("/v1/servers").json().get("servers", [])
            if count > 10:
                assert reply.status_code == 429, reply.text
                assert reply.json()["error"]["reason"] == "quota.exceeded"
                assert listed == []  # nothing of a refused create is left
                in_use = client.get("/v1/limits").json()["limits"]["instances"]["in_use"]
                assert in_use == 0
                continue
            assert reply.status_code == 200, reply.text
            servers = reply.json()["servers"]
            assert len(servers) == count
            assert {s["id"] for s in listed} == {s["id"] for s in servers}
            assert all(wait(client, s["id"])["status"] == "ACTIVE" for s in servers)


def test_concurrent_deletes_each_get_their_own_answer(mesh):
    me, other = member_of(), member_of()
    with mesh.rest(me) as client:
        servers = create(client, fake_flavor(mesh), min_count=3, max_count=3)
        ids = [wait(client, s["id"])["id"] for s in servers]

    def delete(who: dict, server_id: str):
        with mesh.rest(who) as client:
            return client.delete(f"/v1/servers/{server_id}")

    # Every server twice by its owner, and each once by another project.
    asked = [(me, i) for i in ids] * 2 + [(other, i) for i in ids]
    with ThreadPoolExecutor(len(asked)) as pool:
        replies = list(pool.map(lambda a: delete(*a), asked))
    for (who, _), reply in zip(asked, replies, strict=True):
        assert reply.status_code == (200 if who is me else 404), reply.text
    with mesh.rest(me) as client:
        for server_id in ids:
            gone = wait(client, server_id, until=lambda s: s["status"] == "DELETED")
            assert gone["task_state"] == ""
            actions = client.get(f"/v1/servers/{server_id}/actions").json()["actions"]
            deletes = [a for a in actions if a["action"] == "delete"]
            assert len(deletes) == 1 and deletes[0]["result"] == "success", actions
        assert client.get("/v1/limits").json()["limits"]["instances"]["in_use"] == 0
