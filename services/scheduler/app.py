"""scheduler process: stateless, any number of replicas.

It reads hosts from placement, liveness from a watch on etcd, and keeps no
state of its own beyond server group membership in etcd.
"""

from __future__ import annotations

import grpc
from stratus.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc

from services.common.config import ServiceSection, Settings
from services.common.context import ROLES_KEY, SERVICE_ROLE, USER_KEY
from services.common.etcd_client import EtcdConnection
from services.common.liveness import HostLiveness
from services.scheduler.placement import PlacementClient
from services.scheduler.select import Scheduler
from services.scheduler.server_groups import ServerGroups
from services.scheduler.servicer import SchedulerServicer

SERVICE = scheduler_pb2.DESCRIPTOR.services_by_name["SchedulerService"]


class SchedulerApp:
    name = "scheduler"

    def section(self, settings: Settings) -> ServiceSection:
        return settings.scheduler

    async def start(self, settings: Settings) -> None:
        config = settings.scheduler
        self._channel = grpc.aio.insecure_channel(settings.placement.target)
        placement = PlacementClient(
            self._channel, ((ROLES_KEY, SERVICE_ROLE), (USER_KEY, "scheduler"))
        )
        self._liveness = HostLiveness(settings.etcd_endpoints, settings.etcd_prefix)
        # Returns after the first attempt; an etcd outage only means no host is alive yet.
        await self._liveness.start()
        self._etcd = EtcdConnection(settings.etcd_endpoints, purpose="server group locks")
        groups = ServerGroups(self._etcd, settings.etcd_prefix, placement, config.group_lock_ttl_s)
        self.scheduler = Scheduler(placement, self._liveness, groups, config)

    def register(self, server: grpc.aio.Server) -> list[str]:
        scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(
            SchedulerServicer(self.scheduler), server
        )
        return [SERVICE.full_name]

    async def serving(self) -> None:
        pass

    async def stop(self) -> None:
        await self._liveness.stop()
        await self._etcd.close()
        await self._channel.close()
