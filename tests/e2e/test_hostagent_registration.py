"""Host agents report themselves: a provider with inventories and traits, and a liveness key.

Real placement, real etcd, real agents (fake driver, and libvirt's test driver
where libvirt-python is installed), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

from stratus.hostagent.v1 import hostagent_pb2 as pb
from stratus.placement.v1 import resource_providers_pb2 as rp_pb

from deploy.local.mesh import HOST_AGENTS
from tests.drivers.libvirt_host import require_libvirt
from tests.hostagent_client import agent, call, providers_named, wait_for
from tests.placement_client import Placement

ETCDCTL = str(Path(sys.executable).with_name("etcdctl"))

# What the default configuration reports: totals from the driver, 512 MB kept
# back for the host, CPU overcommitted four times.
FAKE_INVENTORY = {
    "VCPU": (16, 0, 4.0),
    "MEMORY_MB": (65536, 512, 1.0),
    "DISK_GB": (1000, 0, 1.0),
}


def etcd_hosts(mesh) -> dict[str, dict]:
    out = subprocess.run(
        [
            ETCDCTL,
            "--endpoints",
            mesh.layout.address("etcd"),
            "get",
            "--prefix",
            "/stratus/hosts/",
            "-w",
            "json",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    kvs = json.loads(out).get("kvs", [])
    return {
        base64.b64decode(kv["key"]).decode().rsplit("/", 1)[1]: json.loads(
            base64.b64decode(kv["value"])
        )
        for kv in kvs
    }


def registered(placement: Placement, host: str):
    found = providers_named(placement, host)
    if not found:
        return None
    inventories = placement.call(
        placement.providers.GetInventories, rp_pb.GetInventoriesRequest(uuid=found[0].uuid)
    )
    traits = placement.call(
        placement.providers.GetProviderTraits, rp_pb.GetProviderTraitsRequest(uuid=found[0].uuid)
    )
    return found[0] if len(inventories.inventories) == 3 and traits.traits else None


def test_every_agent_appears_in_placement_with_inventories_and_traits(mesh, placement):
    for port_name in mesh.layout.agents:
        host = HOST_AGENTS[port_name]
        _, provider = wait_for(lambda h=host: registered(placement, h), 15, f"{host} in placement")
        inventories = {
            i.resource_class: (i.total, i.reserved, i.allocation_ratio)
            for i in placement.call(
                placement.providers.GetInventories,
                rp_pb.GetInventoriesRequest(uuid=provider.uuid),
            ).inventories
        }
        traits = set(
            placement.call(
                placement.providers.GetProviderTraits,
                rp_pb.GetProviderTraitsRequest(uuid=provider.uuid),
            ).traits
        )
        if host.startswith("fake"):
            assert inventories == FAKE_INVENTORY
            assert {"CUSTOM_DRIVER_FAKE", "COMPUTE_NET_ATTACH_INTERFACE"} <= traits
        else:
            # libvirt's test:///default node: 16 CPUs and 3 GiB of memory.
            assert inventories["VCPU"] == (16, 0, 4.0)
            assert inventories["MEMORY_MB"] == (3072, 512, 1.0)
            assert "CUSTOM_DRIVER_LIBVIRT" in traits


def test_every_agent_holds_a_liveness_key_naming_its_address_and_provider(mesh, placement):
    for port_name in mesh.layout.agents:
        host = HOST_AGENTS[port_name]
        _, hosts = wait_for(
            lambda h=host: h in etcd_hosts(mesh) and etcd_hosts(mesh), 15, f"{host} in etcd"
        )
        entry = hosts[host]
        assert entry["address"] == mesh.layout.address(port_name)
        assert entry["provider_uuid"] == providers_named(placement, host)[0].uuid


def test_the_mesh_runs_a_libvirt_host(sqlite_mesh):
    require_libvirt()
    with sqlite_mesh.channel("hostagent_libvirt") as channel:
        info = call(agent(channel).GetHostInfo, pb.GetHostInfoRequest())
    assert (info.host, info.driver) == ("libvirt-1", "libvirt")
