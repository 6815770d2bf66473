"""The host agent's gRPC API on a running mesh: idempotent server calls, host info, guards."""

from __future__ import annotations

import uuid

import grpc
import pytest
from stratus.compute.v1 import power_state_pb2
from stratus.hostagent.v1 import hostagent_pb2 as pb

from tests.hostagent_client import agent, call, spawn_request
from tests.placement_client import reason

MEMBER = (("x-stratus-roles", "member"), ("x-stratus-project", "p"))


@pytest.fixture
def fake_agent(sqlite_mesh):
    with sqlite_mesh.channel("hostagent") as channel:
        yield agent(channel)


def test_host_info_names_the_host_its_driver_and_provider(fake_agent):
    info = call(fake_agent.GetHostInfo, pb.GetHostInfoRequest())
    assert (info.host, info.driver, info.vcpus, info.ram_mb, info.disk_gb) == (
        "fake-1",
        "fake",
        16,
        65536,
        1000,
    )
    assert info.agent_version and info.hypervisor_version
    assert uuid.UUID(info.resource_provider_uuid)
    assert "CUSTOM_DRIVER_FAKE" not in info.traits  # the driver's own traits only


def test_server_lifecycle_is_idempotent_on_the_server_id(fake_agent):
    server_id = str(uuid.uuid4())
    first = call(fake_agent.Spawn, spawn_request(server_id, host="fake-1"))
    assert first.power_state == power_state_pb2.POWER_STATE_RUNNING
    again = call(fake_agent.Spawn, spawn_request(server_id))
    assert again == first
    listed = call(fake_agent.ListServers, pb.ListServersRequest()).servers
    assert [s.id for s in listed].count(server_id) == 1

    off = call(fake_agent.PowerOff, pb.PowerOffRequest(server_id=server_id))
    assert off.power_state == power_state_pb2.POWER_STATE_SHUTDOWN
    on = call(fake_agent.Reboot, pb.RebootRequest(server_id=server_id, type=pb.REBOOT_TYPE_HARD))
    assert on.power_state == power_state_pb2.POWER_STATE_RUNNING

    call(fake_agent.Destroy, pb.DestroyRequest(server_id=server_id))
    call(fake_agent.Destroy, pb.DestroyRequest(server_id=server_id))
    with pytest.raises(grpc.RpcError) as gone:
        call(fake_agent.GetServer, pb.GetServerRequest(server_id=server_id))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    assert reason(gone.value) == "hostagent.server_not_found"


def test_concurrent_spawns_of_one_id_make_one_server(fake_agent):
    server_id = str(uuid.uuid4())
    futures = [
        fake_agent.Spawn.future(
            spawn_request(server_id), metadata=(("x-stratus-roles", "service"),), timeout=15
        )
        for _ in range(8)
    ]
    assert len({f.result().id for f in futures}) == 1
    listed = call(fake_agent.ListServers, pb.ListServersRequest()).servers
    assert [s.id for s in listed].count(server_id) == 1
    call(fake_agent.Destroy, pb.DestroyRequest(server_id=server_id))


@pytest.mark.parametrize(
    ("request_", "status", "code"),
    [
        (
            spawn_request(str(uuid.uuid4()), host="fake-2"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "hostagent.wrong_host",
        ),
        (
            spawn_request(str(uuid.uuid4()), image_ref="windows-95"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "hostagent.image_not_found",
        ),
        (
            spawn_request(str(uuid.uuid4()), vcpus=64),
            grpc.StatusCode.INVALID_ARGUMENT,
            "hostagent.flavor_too_large",
        ),
        (spawn_request("not-a-uuid"), grpc.StatusCode.INVALID_ARGUMENT, "stratus.invalid_field"),
    ],
    ids=["wrong-host", "unknown-image", "too-large", "bad-id"],
)
def test_a_refused_spawn_says_why_and_leaves_nothing(fake_agent, request_, status, code):
    with pytest.raises(grpc.RpcError) as refused:
        call(fake_agent.Spawn, request_)
    assert (refused.value.code(), reason(refused.value)) == (status, code)
    listed = call(fake_agent.ListServers, pb.ListServersRequest()).servers
    assert request_.server_id not in {s.id for s in listed}


def test_only_stratus_services_and_admins_may_call_an_agent(fake_agent):
    with pytest.raises(grpc.RpcError) as denied:
        call(fake_agent.ListServers, pb.ListServersRequest(), metadata=MEMBER)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_agents_are_not_reachable_through_the_edge(sqlite_mesh):
    """Not even with a valid token carrying the service role."""
    edge = sqlite_mesh.layout.address("envoy")
    service = sqlite_mesh.edge_metadata({"x-stratus-roles": "service", "x-stratus-user": "t"})
    with grpc.insecure_channel(edge) as channel, pytest.raises(grpc.RpcError) as hidden:
        call(agent(channel).ListServers, pb.ListServersRequest(), metadata=service)
    assert hidden.value.code() == grpc.StatusCode.UNIMPLEMENTED
