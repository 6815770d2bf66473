"""Creates that arrive together are admitted together (one record transaction,
one quota call), yet each keeps its own outcome: one over quota fails alone,
and the others boot.

Real Envoy, api_gateway, quota, scheduler, placement, etcd and fake hosts.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.compute_client import fake_flavor, member_of, wait

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
