"""api_gateway process: the public compute API over its own database.

It owns the server records and drives each server's life: quota, scheduler,
placement and the host agents are its peers. Builds, actions and deletes
finish in background tasks of this process (see build.py, operations.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Coroutine
from pathlib import Path

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc
from stratus.compute.v1 import (
    flavors_pb2,
    flavors_pb2_grpc,
    host_events_pb2,
    host_events_pb2_grpc,
    hosts_pb2,
    hosts_pb2_grpc,
    key_pairs_pb2,
    key_pairs_pb2_grpc,
    limits_pb2,
    limits_pb2_grpc,
    server_groups_pb2,
    server_groups_pb2_grpc,
    servers_pb2,
    servers_pb2_grpc,
)

from services.api_gateway.build import Builder, Peers
from services.api_gateway.flavors import Flavors
from services.api_gateway.hosts import Hosts
from services.api_gateway.key_pairs import KeyPairs
from services.api_gateway.operations import Operations
from services.api_gateway.peers import Agents, Placement, Quota, Scheduler
from services.api_gateway.reconciler import Reconciler
from services.api_gateway.record_writer import RecordWriter
from services.api_gateway.server_groups import ServerGroups
from services.api_gateway.servers import ServerRecords
from services.api_gateway.servicers.flavors import FlavorServicer
from services.api_gateway.servicers.resources import (
    HostEventServicer,
    HostServicer,
    KeyPairServicer,
    LimitsServicer,
    ServerGroupServicer,
)
from services.api_gateway.servicers.servers import ServerServicer
from services.common.body_guard import BodyGuard
from services.common.config import ServiceSection, Settings
from services.common.db import Database, resolve_url
from services.common.leadership import Leadership
from services.common.liveness import HostLiveness

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
PUBLIC_SERVICES = [
    flavors_pb2.DESCRIPTOR.services_by_name["FlavorService"],
    servers_pb2.DESCRIPTOR.services_by_name["ServerService"],
    key_pairs_pb2.DESCRIPTOR.services_by_name["KeyPairService"],
    server_groups_pb2.DESCRIPTOR.services_by_name["ServerGroupService"],
    hosts_pb2.DESCRIPTOR.services_by_name["HostService"],
    limits_pb2.DESCRIPTOR.services_by_name["LimitsService"],
]
INTERNAL_SERVICES = [host_events_pb2.DESCRIPTOR.services_by_name["HostEventService"]]


class ApiGatewayApp:
    name = "api_gateway"

    def __init__(self) -> None:
        self.db: Database | None = None
        self._tasks: set[asyncio.Task] = set()
        self._stop = asyncio.Event()

    def section(self, settings: Settings) -> ServiceSection:
        return settings.api_gateway

    def _background(self, work: Coroutine) -> None:
        """Run a build/action/delete after the answer; keep it referenced until done."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background server work failed", exc_info=task.exception())

    async def start(self, settings: Settings) -> None:
        self.db = Database(
            resolve_url(settings.api_gateway.database_url, settings.state_dir, self.name)
        )
        await self.db.migrate(MIGRATIONS)
        self._channels = {
            name: grpc.aio.insecure_channel(getattr(settings, name).target)
            for name in ("quota", "scheduler", "placement")
        }
        self._agents = Agents()
        self.peers = Peers(
            quota=Quota(self._channels["quota"]),
            scheduler=Scheduler(self._channels["scheduler"]),
            placement=Placement(self._channels["placement"]),
            agents=self._agents,
        )
        self.liveness = HostLiveness(settings.etcd_endpoints, settings.etcd_prefix)
        # Returns after the first attempt: an etcd outage only means hosts show DOWN.
        await self.liveness.start()
        section = settings.api_gateway
        self._max_attempts = section.max_build_attempts
        self._settings = section
        self.leadership = Leadership(
            settings.etcd_endpoints,
            settings.etcd_prefix,
            "reconciler",
            f"{socket.gethostname()}:{section.target}",
            ttl=section.leader_ttl_s,
        )

    def register(self, server: grpc.aio.Server) -> list[str]:
        assert self.db is not None, "start() opens the database before register()"
        db, peers = self.db, self.peers
        records = ServerRecords(db)
        key_pairs = KeyPairs(db, peers.quota)
        groups = ServerGroups(db, records, peers.quota)
        flavors = Flavors(db)  # one instance: a delete here is seen by creates at once
        writer = RecordWriter(db)
        builder = Builder(
            records,
            writer,
            flavors,
            key_pairs,
            groups,
            peers,
            self._max_attempts,
            self._background,
            self._settings.scheduling_concurrency,
        )
        operations = Operations(records, writer, peers, self.liveness, self._background)
        self.reconciler = Reconciler(
            records,
            builder,
            operations,
            peers.placement,
            self.liveness,
            self.leadership,
            self._settings.reconcile_interval_s,
            self._settings.stuck_after_s,
            self._settings.reconcile_hosts_per_pass,
        )
        flavors_pb2_grpc.add_FlavorServiceServicer_to_server(FlavorServicer(flavors), server)
        servers_pb2_grpc.add_ServerServiceServicer_to_server(
            ServerServicer(records, builder, operations), server
        )
        key_pairs_pb2_grpc.add_KeyPairServiceServicer_to_server(KeyPairServicer(key_pairs), server)
        server_groups_pb2_grpc.add_ServerGroupServiceServicer_to_server(
            ServerGroupServicer(groups), server
        )
        hosts_pb2_grpc.add_HostServiceServicer_to_server(
            HostServicer(Hosts(self.liveness, records, peers.placement)), server
        )
        limits_pb2_grpc.add_LimitsServiceServicer_to_server(LimitsServicer(peers.quota), server)
        host_events_pb2_grpc.add_HostEventServiceServicer_to_server(
            HostEventServicer(operations), server
        )
        ext_proc_grpc.add_ExternalProcessorServicer_to_server(BodyGuard(PUBLIC_SERVICES), server)
        return [s.full_name for s in PUBLIC_SERVICES + INTERNAL_SERVICES] + [
            "envoy.service.ext_proc.v3.ExternalProcessor"
        ]

    async def serving(self) -> None:
        assert self.db is not None
        self.db.keep_statistics()
        await self.leadership.start()
        self._reconciling = asyncio.create_task(self.reconciler.run(self._stop), name="reconciler")

    async def stop(self) -> None:
        # Leadership goes first, so another replica can take over at once.
        self._stop.set()
        await self.leadership.stop()
        await asyncio.gather(self._reconciling, return_exceptions=True)
        # In-flight server work gets the same grace as calls; what is cut short
        # stays recorded in its task state and the reconciler resumes it.
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self.liveness.stop()
        await self._agents.close()
        for channel in self._channels.values():
            await channel.close()
        if self.db is not None:
            await self.db.close()
