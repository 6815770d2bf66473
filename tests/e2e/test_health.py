"""Every part of the mesh reports its health the standard way."""

from __future__ import annotations

import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from deploy.local.mesh import SERVICES


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_is_serving(sqlite_mesh, service):
    with sqlite_mesh.channel(service) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_api_gateway_reports_its_api_serving_and_lists_it_by_reflection(sqlite_mesh):
    with sqlite_mesh.channel("api_gateway") as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="stratus.compute.v1.FlavorService"), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert {"stratus.compute.v1.FlavorService", "grpc.health.v1.Health"} <= names


def test_etcd_and_envoy_are_healthy(sqlite_mesh):
    layout = sqlite_mesh.layout
    assert httpx.get(f"http://{layout.address('etcd')}/health").json()["health"] == "true"
    assert httpx.get(f"http://{layout.address('envoy_admin')}/ready").text.strip() == "LIVE"
