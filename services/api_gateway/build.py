"""Creating servers: record, quota, schedule, spawn — the life of a server, steps 2-4.

The request is answered once the records exist and quota is claimed (BUILD,
task_state "scheduling"; see admission.py); the rest runs in the background.
Each step stores its task state first, and every call it makes is
idempotent on the server id (quota claims, placement claims, spawns), so
repeating a step never counts twice. A spawn that fails moves the placement
claim to the next alternate the scheduler gave, up to max_build_attempts
hosts, then the server goes to ERROR with a fault that says what happened on
each host. Builds running at once share their scheduler calls and their
record writes (record_writer.py): at a few hundred boots a second those,
not the per-server work, were the cost.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

from stratus.hostagent.v1 import hostagent_pb2 as agent_pb
from stratus.placement.v1 import allocations_pb2 as alloc_pb
from stratus.scheduler.v1 import scheduler_pb2 as sched_pb

from services.api_gateway.admission import Admission, quota_claim
from services.api_gateway.flavors import Flavor, Flavors
from services.api_gateway.key_pairs import KeyPairs
from services.api_gateway.models import ServerRow
from services.api_gateway.peers import Agents, Placement, Quota, Scheduler
from services.api_gateway.record_writer import RecordWriter, Transition
from services.api_gateway.server_groups import ServerGroups
from services.api_gateway.servers import (
    ACTIVE,
    BUILD,
    ERROR,
    ServerRecords,
    detached_server,
    now,
    power_name,
    resources_of,
)
from services.common.batching import Batcher
from services.common.context import RequestContext
from services.common.errors import FieldViolation, InvalidArgument, QuotaExceeded, StratusError

log = logging.getLogger(__name__)

# Instances per scheduler call: bounds the time one call holds its builds.
SCHEDULING_BATCH = 200

_POLICIES = {
    "affinity": sched_pb.SERVER_GROUP_POLICY_AFFINITY,
    "anti-affinity": sched_pb.SERVER_GROUP_POLICY_ANTI_AFFINITY,
    "soft-affinity": sched_pb.SERVER_GROUP_POLICY_SOFT_AFFINITY,
    "soft-anti-affinity": sched_pb.SERVER_GROUP_POLICY_SOFT_ANTI_AFFINITY,
}


@dataclass(frozen=True)
class NewServer:
    name: str
    flavor: str
    image_ref: str
    key_name: str = ""
    availability_zone: str = ""
    server_group_id: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    user_data: str = ""
    min_count: int = 1
    max_count: int = 1


@dataclass
class Peers:
    quota: Quota
    scheduler: Scheduler
    placement: Placement
    agents: Agents


class Builder:
    def __init__(
        self,
        records: ServerRecords,
        writer: RecordWriter,
        flavors: Flavors,
        key_pairs: KeyPairs,
        groups: ServerGroups,
        peers: Peers,
        max_attempts: int,
        background,
        scheduling_concurrency: int,
    ) -> None:
        self._records = records
        self._writer = writer
        self._admission = Admission(records, writer, peers.quota)
        self._flavors = flavors
        self._key_pairs = key_pairs
        self._groups = groups
        self._peers = peers
        self._max_attempts = max_attempts
        self._background = background
        # Creates are answered at once and build in the background. Builds that
        # queue while scheduler calls are out go in one BatchSelectDestinations
        # call (the scheduler shares a candidates query and a claim transaction
        # among them), at most SCHEDULING_BATCH instances per call.
        self._scheduling: Batcher[
            sched_pb.SelectDestinationsRequest, sched_pb.SelectDestinationsResponse
        ] = Batcher(
            peers.scheduler.select_many,
            max_batch=SCHEDULING_BATCH,
            concurrency=scheduling_concurrency,
            weight=lambda request: len(request.instance_ids),
        )

    async def create(self, ctx: RequestContext, new: NewServer) -> list[ServerRow]:
        missing = [f for f in ("name", "flavor", "image_ref") if not getattr(new, f)]
        if missing:
            raise InvalidArgument(
                "; ".join(f"server.{f}: required" for f in missing),
                code="stratus.invalid_field",
                field_violations=tuple(FieldViolation(f"server.{f}", "required") for f in missing),
            )
        if new.min_count > new.max_count:
            raise InvalidArgument(
                f"min_count {new.min_count} is more than max_count {new.max_count}",
                code="stratus.invalid_field",
            )
        flavor = await self._flavors.find(ctx, new.flavor)
        if new.key_name:
            await self._key_pairs.get(ctx, new.key_name)
        policy = ""
        if new.server_group_id:
            policy = (await self._groups.get(ctx, new.server_group_id)).policy
        at = now()
        ids = [str(uuid.uuid4()) for _ in range(new.max_count)]
        rows = [
            _record(ctx, new, flavor, policy, server_id, _name(new.name, i, len(ids)), at)
            for i, server_id in enumerate(ids)
        ]
        admitted = await self._admission.admit(ctx, rows, new.min_count)
        if isinstance(admitted, StratusError):
            raise admitted
        self._background(self._build(admitted))
        return admitted

    async def resume_create(self, row: ServerRow) -> None:
        """A create cut short before its server was placed: claim its quota again
        (idempotent: a claim that took effect is answered unchanged), then build."""
        try:
            await self._peers.quota.claim(*quota_claim(row))
        except QuotaExceeded as exc:
            await self._fail(row, exc.code, exc.message)
            return
        # Records written before 0.2 wait in "quota" until their claim is made.
        if row.task_state == "quota" and not await self._records.update_if(
            row.id, "quota", task_state="scheduling"
        ):
            return
        await self.build([row.id])

    async def resume_spawn(self, row: ServerRow) -> None:
        """A spawn cut short: try the recorded host again (spawn is idempotent), then
        the recorded alternates."""
        held = await self._peers.placement.held(row.id)
        here = sched_pb.Destination(
            host=row.host,
            address=row.host_address,
            resource_provider_uuid=row.provider_uuid,
            allocations=[
                alloc_pb.Allocation(resource_provider_uuid=rp, resources=res)
                for rp, res in held.items()
            ],
        )
        alternates = [_destination_of(a) for a in row.alternates]
        await self._spawn_or_fail(row, [here, *alternates], expected="spawning")

    async def build(self, server_ids: list[str]) -> None:
        """Schedule the servers (one request), then spawn each."""
        rows = await self._records.load_many(server_ids)
        if rows:
            await self._build(rows)

    async def _build(self, rows: list[ServerRow]) -> None:
        try:
            reply = await self._scheduling.submit(_select_request(rows))
        except StratusError as exc:
            await asyncio.gather(*(self._fail(row, exc.code, exc.message) for row in rows))
            return
        by_id = {row.id: row for row in rows}
        await asyncio.gather(
            *(
                self._spawn_or_fail(
                    by_id[s.instance_id], [s.destination, *s.alternates], expected="scheduling"
                )
                for s in reply.selections
            )
        )

    async def _spawn_or_fail(
        self, row: ServerRow, destinations: list[sched_pb.Destination], expected: str
    ) -> None:
        try:
            await self._spawn(row, destinations, expected)
        except Exception as exc:  # a bug or an outage must not leave the server in BUILD
            log.exception("building server %s failed", row.id)
            await self._fail(row, "compute.build_failed", f"the build failed: {exc}")

    async def _spawn(
        self, row: ServerRow, destinations: list[sched_pb.Destination], expected: str
    ) -> None:
        destinations = destinations[: self._max_attempts]
        tried: list[str] = []
        for attempt, destination in enumerate(destinations):
            if attempt and not await self._move_claim(row, destination, tried):
                continue
            moved_on = await self._writer.move(
                Transition(
                    row.id,
                    "spawning" if attempt else expected,
                    dict(
                        task_state="spawning",
                        host=destination.host,
                        host_address=destination.address,
                        provider_uuid=destination.resource_provider_uuid,
                        alternates=[_alternate(a) for a in destinations[attempt + 1 :]],
                    ),
                )
            )
            if not moved_on:  # deleted meanwhile: give back what the scheduler claimed
                await self._peers.placement.release(row.id)
                return
            try:
                server = await self._peers.agents.spawn(
                    destination.address, _spawn_request(row, destination)
                )
            except StratusError as exc:
                tried.append(f"{destination.host}: {exc.message}")
                log.warning("spawn of %s on %s failed: %s", row.id, destination.host, exc.message)
                await self._clean_up(row, destination)
                continue
            settled = await self._writer.move(
                Transition(
                    row.id,
                    "spawning",
                    dict(status=ACTIVE, task_state="", power_state=power_name(server.power_state)),
                    close=("create", "success", f"on {destination.host}"),
                )
            )
            if not settled:  # deleted while spawning: the delete may have missed what we just made
                await self._clean_up(row, destination)
                await self._peers.placement.release(row.id)
            return
        await self._peers.placement.release(row.id)
        message = "; ".join(tried) or "no host was left to try"
        await self._fail(
            row,
            "compute.spawn_failed",
            f"the server could not be started on {len(tried)} host(s): {message}",
        )

    async def _move_claim(
        self, row: ServerRow, destination: sched_pb.Destination, tried: list[str]
    ) -> bool:
        """Move the placement claim to an alternate; False when it cannot go there now."""
        if not await self._groups.allows(row, destination.host):
            tried.append(f"{destination.host}: skipped, the server group's policy forbids it")
            return False
        allocations = {a.resource_provider_uuid: dict(a.resources) for a in destination.allocations}
        try:
            await self._peers.placement.move(row.id, row.project_id, row.user_id, allocations)
        except StratusError as exc:
            tried.append(f"{destination.host}: no room any more ({exc.message})")
            return False
        return True

    async def _clean_up(self, row: ServerRow, destination: sched_pb.Destination) -> None:
        try:  # a failed spawn may have left something behind; destroy is idempotent
            await self._peers.agents.destroy(destination.address, destination.host, row.id)
        except StratusError as exc:
            log.warning("cleaning up %s on %s failed: %s", row.id, destination.host, exc.message)

    async def _fail(self, row: ServerRow, code: str, message: str) -> None:
        fault = dict(fault_code=code, fault_message=message, fault_time=now())
        await self._writer.move(
            Transition(
                row.id,
                None,
                dict(status=ERROR, task_state="", **fault),
                close=("create", "error", message),
            )
        )


def _name(name: str, index: int, count: int) -> str:
    return name if count == 1 else f"{name}-{index + 1}"


def _record(
    ctx: RequestContext,
    new: NewServer,
    flavor: Flavor,
    policy: str,
    server_id: str,
    name: str,
    at,
) -> ServerRow:
    return detached_server(
        id=server_id,
        name=name,
        project_id=ctx.project_id,
        user_id=ctx.user_id,
        flavor_id=flavor.id,
        flavor_name=flavor.name,
        vcpus=flavor.vcpus,
        ram_mb=flavor.ram_mb,
        disk_gb=flavor.disk_gb,
        resources=flavor.resources,
        required_traits=sorted(flavor.required_traits),
        forbidden_traits=sorted(flavor.forbidden_traits),
        image_ref=new.image_ref,
        key_name=new.key_name,
        availability_zone=new.availability_zone,
        server_group_id=new.server_group_id or None,
        server_group_policy=policy,
        metadata_=dict(new.metadata),
        user_data=new.user_data,
        status=BUILD,
        task_state="scheduling",  # from the start: see admission.py
        power_state="NOSTATE",
        host="",
        host_address="",
        provider_uuid="",
        alternates=[],
        fault_code="",
        fault_message="",
        fault_time=None,
        created_at=at,
        updated_at=at,
        deleted_at=None,
    )


def _select_request(rows: list[ServerRow]) -> sched_pb.SelectDestinationsRequest:
    first = rows[0]
    resources = resources_of(first)
    request = sched_pb.SelectDestinationsRequest(
        instance_ids=[row.id for row in rows],
        project_id=first.project_id,
        user_id=first.user_id or "unknown",
        resources=resources,
        required_traits=first.required_traits,
        forbidden_traits=first.forbidden_traits,
        availability_zone=first.availability_zone,
    )
    if first.server_group_id:
        request.server_group.id = first.server_group_id
        request.server_group.policy = _POLICIES[first.server_group_policy]
    return request


def _spawn_request(row: ServerRow, destination: sched_pb.Destination) -> agent_pb.SpawnRequest:
    return agent_pb.SpawnRequest(
        host=destination.host,
        server_id=row.id,
        name=row.name,
        vcpus=row.vcpus,
        ram_mb=row.ram_mb,
        disk_gb=row.disk_gb,
        image_ref=row.image_ref,
        allocations=destination.allocations,
    )


def _destination_of(alternate: dict) -> sched_pb.Destination:
    return sched_pb.Destination(
        host=alternate["host"],
        address=alternate["address"],
        resource_provider_uuid=alternate["provider_uuid"],
        allocations=[
            alloc_pb.Allocation(resource_provider_uuid=rp, resources=resources)
            for rp, resources in alternate["allocations"].items()
        ],
    )


def _alternate(destination: sched_pb.Destination) -> dict:
    return {
        "host": destination.host,
        "address": destination.address,
        "provider_uuid": destination.resource_provider_uuid,
        "allocations": {
            a.resource_provider_uuid: dict(a.resources) for a in destination.allocations
        },
    }
