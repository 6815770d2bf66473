"""Helpers to talk to host agents and find them in placement, as api_gateway will."""

from __future__ import annotations

import time

import grpc
from stratus.hostagent.v1 import hostagent_pb2 as pb
from stratus.hostagent.v1 import hostagent_pb2_grpc
from stratus.placement.v1 import resource_providers_pb2 as rp_pb

from tests.placement_client import SERVICE, Placement


def agent(channel: grpc.Channel) -> hostagent_pb2_grpc.HostAgentServiceStub:
    return hostagent_pb2_grpc.HostAgentServiceStub(channel)


def call(method, request, metadata=SERVICE):
    return method(request, metadata=metadata, timeout=15)


def spawn_request(server_id: str, **overrides) -> pb.SpawnRequest:
    values = dict(
        server_id=server_id, name="web-1", vcpus=1, ram_mb=512, disk_gb=1, image_ref="cirros"
    )
    values.update(overrides)
    return pb.SpawnRequest(**values)


def providers_named(placement: Placement, name: str) -> list[rp_pb.ResourceProvider]:
    reply = placement.call(
        placement.providers.ListResourceProviders, rp_pb.ListResourceProvidersRequest(name=name)
    )
    return list(reply.resource_providers)


def wait_for(predicate, timeout: float, what: str, step: float = 0.05):
    """Poll predicate until it returns something truthy; the elapsed seconds and value."""
    started = time.monotonic()
    while True:
        value = predicate()
        if value:
            return time.monotonic() - started, value
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(step)
