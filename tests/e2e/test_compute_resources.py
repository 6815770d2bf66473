"""Key pairs, server groups, hosts and limits through the REST edge."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.compute_client import create, fake_flavor, member_of, wait
from tests.harness import ADMIN

# Made with ssh-keygen -t ed25519; `ssh-keygen -l` prints this fingerprint.
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIITuIr3wiA0nnXZVr74dWYT9hlOmHHNaJI/Vfp8ZciGa test"
ED25519_FINGERPRINT = "SHA256:jR12abd3pIadqZpiaroYN8GORCqguXWfJx35noIWJzk"


def small_rsa_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def test_key_pairs_are_imported_validated_and_used(sqlite_mesh):
    with sqlite_mesh.rest(member_of()) as client:
        made = client.post("/v1/keypairs", json={"name": "laptop", "public_key": ED25519})
        assert made.status_code == 200, made.text
        assert (made.json()["fingerprint"], made.json()["type"]) == (
            ED25519_FINGERPRINT,
            "ssh-ed25519",
        )
        twice = client.post("/v1/keypairs", json={"name": "laptop", "public_key": ED25519})
        assert twice.status_code == 409
        for bad in ("ssh-ed25519 not-base64!", "hello", small_rsa_key()):
            refused = client.post("/v1/keypairs", json={"name": "bad", "public_key": bad})
            assert refused.status_code == 400, bad
            assert refused.json()["error"]["reason"] == "compute.invalid_public_key"
        assert [k["name"] for k in client.get("/v1/keypairs").json()["key_pairs"]] == ["laptop"]
        (server,) = create(client, fake_flavor(sqlite_mesh), key_name="laptop")
        assert wait(client, server["id"])["key_name"] == "laptop"
        assert client.get("/v1/limits").json()["limits"]["key_pairs"]["in_use"] == 1
        assert client.delete("/v1/keypairs/laptop").status_code == 200
        assert client.get("/v1/keypairs/laptop").status_code == 404
        assert client.get("/v1/limits").json()["limits"]["key_pairs"]["in_use"] == 0


def test_key_pairs_and_groups_of_another_project_are_invisible(sqlite_mesh):
    with sqlite_mesh.rest(member_of()) as a, sqlite_mesh.rest(member_of()) as b:
        a.post("/v1/keypairs", json={"name": "k", "public_key": ED25519})
        group = a.post("/v1/server_groups", json={"name": "g", "policy": "affinity"}).json()
        assert b.get("/v1/keypairs/k").status_code == 404
        assert b.get(f"/v1/server_groups/{group['id']}").status_code == 404
        assert b.delete(f"/v1/server_groups/{group['id']}").status_code == 404
        assert b.get("/v1/server_groups").json().get("server_groups", []) == []


def test_a_server_group_with_members_cannot_be_deleted(sqlite_mesh):
    with sqlite_mesh.rest(member_of()) as client:
        bad = client.post("/v1/server_groups", json={"name": "g", "policy": "sideways"})
        assert bad.status_code == 400
        group = client.post("/v1/server_groups", json={"name": "g", "policy": "anti-affinity"})
        gid = group.json()["id"]
        (server,) = create(client, fake_flavor(sqlite_mesh), server_group_id=gid)
        wait(client, server["id"])
        busy = client.delete(f"/v1/server_groups/{gid}")
        assert busy.status_code == 409
        assert busy.json()["error"]["reason"] == "compute.server_group_in_use"
        client.delete(f"/v1/servers/{server['id']}")
        wait(client, server["id"], until=lambda s: s["status"] == "DELETED")
        assert client.delete(f"/v1/server_groups/{gid}").status_code == 200


def test_admins_see_hosts_with_status_capacity_and_servers(sqlite_mesh):
    with sqlite_mesh.rest(member_of()) as client:
        (server,) = create(client, fake_flavor(sqlite_mesh))
        host = wait(client, server["id"])["host"]
        assert client.get("/v1/hosts").status_code == 403
    with sqlite_mesh.rest(ADMIN) as admin:
        hosts = {h["name"]: h for h in admin.get("/v1/hosts").json()["hosts"]}
        one = admin.get(f"/v1/hosts/{host}").json()
        missing = admin.get("/v1/hosts/no-such-host")
    assert {"fake-1", "fake-2"} <= set(hosts)
    assert hosts["fake-1"]["status"] == "UP" and hosts["fake-1"]["driver"] == "fake"
    assert one["resources"]["VCPU"]["capacity"] == 64  # 16 CPUs, ratio 4
    assert one["resources"]["VCPU"]["used"] >= 1 and one["server_count"] >= 1
    assert missing.status_code == 404


def test_limits_show_the_projects_quota_and_use(sqlite_mesh):
    with sqlite_mesh.rest(member_of()) as client:
        create(client, fake_flavor(sqlite_mesh, vcpus=2, ram_mb=512))
        limits = client.get("/v1/limits").json()["limits"]
    assert limits["instances"] == {"limit": 10, "in_use": 1}
    assert limits["cores"] == {"limit": 20, "in_use": 2}
    assert limits["ram_mb"]["in_use"] == 512
