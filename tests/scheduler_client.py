"""Simulated hosts and a scheduler client for scheduler tests.

A simulated host is a real participant where the scheduler looks: a resource
provider with inventory and a test-unique trait in placement, and a liveness
key in etcd. No agent process runs behind it: the scheduler never calls one.
The trait keeps each test to its own hosts on a shared mesh.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field

import aetcd
import grpc
from stratus.scheduler.v1 import scheduler_pb2 as pb
from stratus.scheduler.v1 import scheduler_pb2_grpc

from services.common.etcd_client import parse_endpoints
from tests.placement_client import SERVICE, Placement


@dataclass
class Host:
    name: str
    provider_uuid: str


@dataclass
class SimulatedHosts:
    placement: Placement
    etcd_endpoint: str
    trait: str = field(default_factory=lambda: f"CUSTOM_TEST_{uuid.uuid4().hex[:10].upper()}")
    hosts: list[Host] = field(default_factory=list)

    def add(
        self,
        count: int,
        vcpus: int = 4,
        ram_mb: int = 8192,
        zone: str = "default",
        alive: bool = True,
    ) -> list[Host]:
        made = []
        for _ in range(count):
            name = f"sim-{uuid.uuid4().hex[:8]}"
            provider = self.placement.provider(name=name, VCPU=vcpus, MEMORY_MB=ram_mb)
            self.placement.traits(provider.uuid, self.trait)
            made.append(Host(name, provider.uuid))
        if alive:
            self.set_alive(made, zone)
        self.hosts += made
        return made

    def set_alive(self, hosts: list[Host], zone: str = "default") -> None:
        async def put() -> None:
            host, port = parse_endpoints(self.etcd_endpoint)[0]
            async with aetcd.Client(host, port) as client:
                for h in hosts:
                    value = {
                        "host": h.name,
                        "address": "127.0.0.1:1",
                        "driver": "simulated",
                        "provider_uuid": h.provider_uuid,
                        "availability_zone": zone,
                    }
                    await client.put(
                        f"/stratus/hosts/{h.name}".encode(), json.dumps(value).encode()
                    )

        asyncio.run(put())

    def set_dead(self, hosts: list[Host]) -> None:
        async def delete() -> None:
            host, port = parse_endpoints(self.etcd_endpoint)[0]
            async with aetcd.Client(host, port) as client:
                for h in hosts:
                    await client.delete(f"/stratus/hosts/{h.name}".encode())

        asyncio.run(delete())

    def usage(self, host: Host) -> dict[str, int]:
        return self.placement.usages(host.provider_uuid)

    def by_provider(self) -> dict[str, Host]:
        return {h.provider_uuid: h for h in self.hosts}


def select_request(
    hosts: SimulatedHosts, count: int = 1, **overrides
) -> pb.SelectDestinationsRequest:
    values = dict(
        instance_ids=[str(uuid.uuid4()) for _ in range(count)],
        project_id="project-a",
        user_id="alice",
        resources={"VCPU": 1, "MEMORY_MB": 1024},
        required_traits=[hosts.trait],
    )
    values.update(overrides)
    return pb.SelectDestinationsRequest(**values)


def scheduler(channel: grpc.Channel) -> scheduler_pb2_grpc.SchedulerServiceStub:
    return scheduler_pb2_grpc.SchedulerServiceStub(channel)


def select(stub, request, metadata=SERVICE) -> pb.SelectDestinationsResponse:
    return stub.SelectDestinations(request, metadata=metadata, timeout=30)
