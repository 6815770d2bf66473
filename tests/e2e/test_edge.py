"""What the REST edge (Envoy) does on its own: strict bodies, JSON errors, clean headers."""

from __future__ import annotations

import uuid

import grpc
import pytest
from stratus.compute.v1 import flavors_pb2, flavors_pb2_grpc, host_events_pb2, host_events_pb2_grpc

from tests.harness import ADMIN, MEMBER

ERROR_KEYS = {"code", "status", "reason", "message", "request_id"}


def assert_json_error(response, code: int, reason: str) -> dict:
    assert response.status_code == code, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error.keys() >= ERROR_KEYS
    assert error["code"] == code
    assert error["reason"] == reason
    assert error["request_id"] == response.headers["x-request-id"]
    return error


def flavor_names(client) -> list[str]:
    return [
        f["name"] for f in client.get("/v1/flavors", params={"page_size": 1000}).json()["flavors"]
    ]


@pytest.mark.parametrize("typo", ["falvor", "vcpu", "ramMB", "isPublic_"])
def test_unknown_body_field_is_rejected_and_nothing_created(sqlite_mesh, typo):
    name = f"typo-{uuid.uuid4().hex[:8]}"
    with sqlite_mesh.rest(ADMIN) as admin:
        response = admin.post(
            "/v1/flavors", json={"name": name, "vcpus": 1, "ram_mb": 256, typo: 1}
        )
        error = assert_json_error(response, 400, "stratus.unknown_field")
        assert error["field_violations"][0]["field"] == f"flavor.{typo}"
        assert name not in flavor_names(admin)


def test_both_json_spellings_of_a_field_are_accepted(sqlite_mesh):
    """The transcoder accepts proto names and lowerCamel JSON names; the guard must agree."""
    with sqlite_mesh.rest(ADMIN) as admin:
        response = admin.post(
            "/v1/flavors",
            json={"name": f"camel-{uuid.uuid4().hex[:8]}", "vcpus": 1, "ramMb": 256, "diskGb": 3},
        )
    assert response.status_code == 200, response.text
    assert (response.json()["ram_mb"], response.json()["disk_gb"]) == (256, 3)


@pytest.mark.parametrize("body", [b"{bad", b"[1, 2]", b'"a string"'])
def test_malformed_json_is_a_json_400(sqlite_mesh, body):
    with sqlite_mesh.rest(ADMIN) as admin:
        response = admin.post(
            "/v1/flavors", content=body, headers={"content-type": "application/json"}
        )
    assert_json_error(response, 400, "stratus.invalid_json")


def test_unknown_route_is_a_json_404(sqlite_mesh):
    with sqlite_mesh.rest(MEMBER) as client:
        error = assert_json_error(client.get("/v1/nothing-here"), 404, "stratus.unknown_route")
        assert "/v1/nothing-here" in error["message"]
        # A known path with a method it does not have is also not a route.
        assert_json_error(client.put("/v1/flavors", json={}), 404, "stratus.unknown_route")


def test_unknown_query_parameter_is_a_json_400(sqlite_mesh):
    with sqlite_mesh.rest(MEMBER) as client:
        error = assert_json_error(
            client.get("/v1/flavors", params={"pagesize": 5}), 400, "stratus.invalid_request"
        )
    assert "pagesize" in error["message"]


def test_no_grpc_plumbing_leaks_to_rest_clients(sqlite_mesh):
    with sqlite_mesh.rest(MEMBER) as client:
        responses = [
            client.get("/v1/flavors"),
            client.get(f"/v1/flavors/{uuid.uuid4()}"),
            client.get("/v1/nope"),
        ]
    for response in responses:
        leaked = [
            h
            for h in response.headers
            if h.startswith("grpc-")
            or h in ("x-fault-body", "x-stratus-fault", "x-envoy-upstream-service-time")
        ]
        assert leaked == [], (response.status_code, leaked)
        assert response.headers["x-request-id"]


def test_native_grpc_clients_can_use_the_edge(sqlite_mesh):
    """Envoy also routes plain gRPC to the public services, so tools need only one address."""
    with grpc.insecure_channel(sqlite_mesh.layout.address("envoy")) as channel:
        reply = flavors_pb2_grpc.FlavorServiceStub(channel).ListFlavors(
            flavors_pb2.ListFlavorsRequest(page_size=1),
            metadata=sqlite_mesh.edge_metadata(MEMBER),
            timeout=5,
        )
    assert isinstance(reply, flavors_pb2.ListFlavorsResponse)


def test_native_grpc_errors_through_the_edge_keep_their_status(sqlite_mesh):
    """Broke once: the edge stripped grpc-status from trailers-only answers ("No status")."""
    edge = sqlite_mesh.layout.address("envoy")
    with grpc.insecure_channel(edge) as channel, pytest.raises(grpc.RpcError) as missing:
        flavors_pb2_grpc.FlavorServiceStub(channel).GetFlavor(
            flavors_pb2.GetFlavorRequest(id=str(uuid.uuid4())),
            metadata=sqlite_mesh.edge_metadata(MEMBER),
            timeout=5,
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_internal_services_are_not_reachable_through_the_edge(sqlite_mesh):
    """Not even with a valid token carrying the service role."""
    request = host_events_pb2.ReportPowerStatesRequest(
        host="h", changes=[host_events_pb2.PowerStateChange(server_id=str(uuid.uuid4()))]
    )
    edge = sqlite_mesh.layout.address("envoy")
    with grpc.insecure_channel(edge) as channel, pytest.raises(grpc.RpcError) as hidden:
        host_events_pb2_grpc.HostEventServiceStub(channel).ReportPowerStates(
            request,
            metadata=sqlite_mesh.edge_metadata({"x-stratus-roles": "service"}),
            timeout=5,
        )
    assert hidden.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_placement_claims_are_not_reachable_through_the_edge(sqlite_mesh):
    """Only the mesh claims (scheduler, api_gateway); admins read placement at the edge."""
    from stratus.placement.v1 import allocations_pb2, allocations_pb2_grpc

    from tests.harness import ADMIN

    edge = sqlite_mesh.layout.address("envoy")
    consumer = str(uuid.uuid4())
    with grpc.insecure_channel(edge) as channel:
        stub = allocations_pb2_grpc.AllocationServiceStub(channel)
        for method, request in (
            (
                stub.DeleteAllocations,
                allocations_pb2.DeleteAllocationsRequest(consumer_uuid=consumer),
            ),
            (
                stub.BatchDeleteAllocations,
                allocations_pb2.BatchDeleteAllocationsRequest(consumer_uuids=[consumer]),
            ),
        ):
            with pytest.raises(grpc.RpcError) as hidden:
                method(request, metadata=sqlite_mesh.edge_metadata(ADMIN), timeout=5)
            assert hidden.value.code() == grpc.StatusCode.UNIMPLEMENTED
