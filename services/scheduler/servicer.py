"""stratus.scheduler.v1.SchedulerService: adapts gRPC to select_destinations."""

from __future__ import annotations

from stratus.placement.v1 import allocations_pb2 as alloc_pb
from stratus.scheduler.v1 import scheduler_pb2 as pb
from stratus.scheduler.v1 import scheduler_pb2_grpc

from services.common.context import ADMIN_ROLE, SERVICE_ROLE, current
from services.scheduler.request import GroupPolicy, SchedulingRequest, ServerGroup
from services.scheduler.select import Destination, Scheduler

_POLICIES = {
    pb.SERVER_GROUP_POLICY_AFFINITY: GroupPolicy.AFFINITY,
    pb.SERVER_GROUP_POLICY_ANTI_AFFINITY: GroupPolicy.ANTI_AFFINITY,
    pb.SERVER_GROUP_POLICY_SOFT_AFFINITY: GroupPolicy.SOFT_AFFINITY,
    pb.SERVER_GROUP_POLICY_SOFT_ANTI_AFFINITY: GroupPolicy.SOFT_ANTI_AFFINITY,
}


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServiceServicer):
    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler

    async def SelectDestinations(
        self, request: pb.SelectDestinationsRequest, context
    ) -> pb.SelectDestinationsResponse:
        current().require_any_role((SERVICE_ROLE, ADMIN_ROLE), "scheduling servers")
        group = None
        if request.HasField("server_group"):
            group = ServerGroup(request.server_group.id, _POLICIES[request.server_group.policy])
        selections = await self._scheduler.select_destinations(
            SchedulingRequest(
                instance_ids=tuple(request.instance_ids),
                project_id=request.project_id,
                user_id=request.user_id,
                resources=dict(request.resources),
                required_traits=tuple(request.required_traits),
                forbidden_traits=tuple(request.forbidden_traits),
                availability_zone=request.availability_zone,
                server_group=group,
                ignore_hosts=frozenset(request.ignore_hosts),
            )
        )
        return pb.SelectDestinationsResponse(
            selections=[
                pb.Selection(
                    instance_id=s.instance_id,
                    destination=_destination(s.destination),
                    alternates=[_destination(a) for a in s.alternates],
                )
                for s in selections
            ]
        )


def _destination(destination: Destination) -> pb.Destination:
    return pb.Destination(
        host=destination.host,
        address=destination.address,
        resource_provider_uuid=destination.provider_uuid,
        allocations=[
            alloc_pb.Allocation(resource_provider_uuid=rp, resources=resources)
            for rp, resources in destination.allocations.items()
        ],
    )
