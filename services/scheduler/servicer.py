"""stratus.scheduler.v1.SchedulerService: adapts gRPC to select_destinations / select_many."""

from __future__ import annotations

from stratus.placement.v1 import allocations_pb2 as alloc_pb
from stratus.scheduler.v1 import scheduler_pb2 as pb
from stratus.scheduler.v1 import scheduler_pb2_grpc

from services.common.context import ADMIN_ROLE, SERVICE_ROLE, current
from services.common.errors import StratusError
from services.common.status_details import to_status
from services.scheduler.decision import Destination, Selection
from services.scheduler.request import GroupPolicy, SchedulingRequest, ServerGroup
from services.scheduler.select import Scheduler

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
        selections = await self._scheduler.select_destinations(_request(request))
        return _response(selections)

    async def BatchSelectDestinations(
        self, request: pb.BatchSelectDestinationsRequest, context
    ) -> pb.BatchSelectDestinationsResponse:
        current().require_any_role((SERVICE_ROLE, ADMIN_ROLE), "scheduling servers")
        outcomes = await self._scheduler.select_many([_request(r) for r in request.requests])
        return pb.BatchSelectDestinationsResponse(
            results=[
                pb.SelectDestinationsResult(error=to_status(o))
                if isinstance(o, StratusError)
                else pb.SelectDestinationsResult(response=_response(o))
                for o in outcomes
            ]
        )


def _request(request: pb.SelectDestinationsRequest) -> SchedulingRequest:
    group = None
    if request.HasField("server_group"):
        group = ServerGroup(request.server_group.id, _POLICIES[request.server_group.policy])
    return SchedulingRequest(
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


def _response(selections: list[Selection]) -> pb.SelectDestinationsResponse:
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
