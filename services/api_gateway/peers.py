"""api_gateway's calls to the other services, as plain Python calls.

Each client turns a peer's gRPC error back into our own StratusError (same
status, code and message), so a quota refusal reaches the user as the 429
quota gave, not as a generic failure.

Releases are idempotent, so they are retried a few times when the call
itself failed (Unavailable: the peer unreachable, or the call cut off). Seen
under a burst of deletes on PostgreSQL: placement's gRPC server cancelled a
few DeleteAllocations within milliseconds, before their handler ran (cause
in gRPC core not found); each such delete then waited for the reconciler,
two minutes. Retries come from tenacity, a well-kept retry library already
in the environment (sushy-tools depends on it).

Releases that arrive together (servers deleted at once) leave in one batch
call to each peer (Releases below): a call of its own to placement and to
quota per delete was about a third of what a delete cost the whole mesh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc
import tenacity
from stratus.hostagent.v1 import hostagent_pb2 as agent_pb
from stratus.hostagent.v1 import hostagent_pb2_grpc
from stratus.placement.v1 import allocations_pb2 as alloc_pb
from stratus.placement.v1 import allocations_pb2_grpc, resource_providers_pb2_grpc
from stratus.placement.v1 import resource_providers_pb2 as rp_pb
from stratus.quota.v1 import quota_pb2, quota_pb2_grpc
from stratus.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc

from services.common.batching import Batcher
from services.common.context import REQUEST_ID_KEY, ROLES_KEY, SERVICE_ROLE, USER_KEY, current
from services.common.errors import StratusError, Unavailable
from services.common.peer_errors import from_rpc_error
from services.common.status_details import from_status

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 30
# Consumers per batch release call (both peers accept up to 1,000).
RELEASE_BATCH = 500
# A spawn may wait for a hypervisor; generous, but bounded.
AGENT_TIMEOUT_S = 120


def _metadata() -> tuple[tuple[str, str], ...]:
    ctx = current()
    return ((ROLES_KEY, SERVICE_ROLE), (USER_KEY, "api_gateway"), (REQUEST_ID_KEY, ctx.request_id))


async def _call(peer: str, method, request, deadline_s: float = CALL_TIMEOUT_S):
    try:
        return await method(request, metadata=_metadata(), timeout=deadline_s)
    except grpc.aio.AioRpcError as exc:
        raise from_rpc_error(exc, peer) from exc


@tenacity.retry(
    retry=tenacity.retry_if_exception_type(Unavailable),
    stop=tenacity.stop_after_attempt(4),
    wait=tenacity.wait_exponential_jitter(multiplier=0.1, max=1.0, jitter=0.1),
    before_sleep=tenacity.before_sleep_log(log, logging.WARNING),
    reraise=True,
)
async def _call_idempotent(peer: str, method, request):
    """_call, again after a short wait while the call itself fails; only for
    calls that change nothing the second time."""
    return await _call(peer, method, request)


class Releases:
    """Idempotent releases of one peer: those that arrive together go in one
    batch call (retried as a whole while the call itself fails). A peer too
    old to have the batch call (UNIMPLEMENTED, during a rolling upgrade) is
    sent one call per consumer from then on."""

    def __init__(
        self,
        peer: str,
        batch: Callable[[list[str]], tuple[object, object]],
        one: Callable[[str], tuple[object, object]],
    ) -> None:
        """`batch(consumers)` and `one(consumer)` name the stub method and its request."""
        self._peer = peer
        self._batch = batch
        self._one = one
        self._batched = True
        self._batcher: Batcher[str, None] = Batcher(
            self._send, max_batch=RELEASE_BATCH, distinct=lambda consumer: consumer
        )

    async def release(self, consumer: str) -> None:
        await self._batcher.submit(consumer)

    async def _send(self, consumers: list[str]) -> list[BaseException | None]:
        if self._batched:
            try:
                await _call_idempotent(self._peer, *self._batch(consumers))
                return [None] * len(consumers)
            except StratusError as error:
                if not _unimplemented(error):
                    raise
                log.warning("%s has no batch release yet: releasing one by one", self._peer)
                self._batched = False
        outcomes = await asyncio.gather(
            *(_call_idempotent(self._peer, *self._one(c)) for c in consumers),
            return_exceptions=True,
        )
        return [o if isinstance(o, BaseException) else None for o in outcomes]


def _unimplemented(error: StratusError) -> bool:
    cause = error.__cause__
    return isinstance(cause, grpc.RpcError) and cause.code() == grpc.StatusCode.UNIMPLEMENTED


class Quota:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = quota_pb2_grpc.QuotaServiceStub(channel)
        self._releases = Releases(
            "quota",
            lambda ids: (self._stub.BatchRelease, quota_pb2.BatchReleaseRequest(consumer_ids=ids)),
            lambda one: (self._stub.Release, quota_pb2.ReleaseRequest(consumer_id=one)),
        )

    async def claim(
        self, consumer: str, project: str, deltas: dict[str, int], server_group: str = ""
    ) -> None:
        await _call(
            "quota",
            self._stub.Claim,
            quota_pb2.ClaimRequest(
                consumer_id=consumer,
                project_id=project,
                deltas=deltas,
                server_group_id=server_group,
            ),
        )

    async def claim_batches(
        self, batches: list[list[tuple[str, str, dict[str, int], str]]]
    ) -> list[StratusError | None]:
        """claim_batch for each batch in one call: None where it claimed, else the
        error quota gave that batch alone."""
        reply = await _call(
            "quota",
            self._stub.ClaimBatches,
            quota_pb2.ClaimBatchesRequest(
                batches=[
                    quota_pb2.BatchClaimRequest(
                        claims=[
                            quota_pb2.ClaimRequest(
                                consumer_id=consumer,
                                project_id=project,
                                deltas=deltas,
                                server_group_id=group,
                            )
                            for consumer, project, deltas, group in batch
                        ]
                    )
                    for batch in batches
                ]
            ),
        )
        return [from_status(r.error) if r.HasField("error") else None for r in reply.results]

    async def release(self, consumer: str) -> None:
        await self._releases.release(consumer)

    async def project(self, project: str) -> quota_pb2.ProjectQuota:
        return await _call(
            "quota",
            self._stub.GetProjectQuota,
            quota_pb2.GetProjectQuotaRequest(project_id=project),
        )


class Scheduler:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)

    async def select(
        self, request: scheduler_pb2.SelectDestinationsRequest
    ) -> scheduler_pb2.SelectDestinationsResponse:
        return await _call("scheduler", self._stub.SelectDestinations, request)

    async def select_many(
        self, requests: list[scheduler_pb2.SelectDestinationsRequest]
    ) -> list[scheduler_pb2.SelectDestinationsResponse | StratusError]:
        """Each request's selections, or its own failure as the error SelectDestinations
        would have raised."""
        reply = await _call(
            "scheduler",
            self._stub.BatchSelectDestinations,
            scheduler_pb2.BatchSelectDestinationsRequest(requests=requests),
        )
        return [
            r.response if r.HasField("response") else from_status(r.error) for r in reply.results
        ]


class Placement:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._allocations = allocations_pb2_grpc.AllocationServiceStub(channel)
        self._providers = resource_providers_pb2_grpc.ResourceProviderServiceStub(channel)
        self._releases = Releases(
            "placement",
            lambda ids: (
                self._allocations.BatchDeleteAllocations,
                alloc_pb.BatchDeleteAllocationsRequest(consumer_uuids=ids),
            ),
            lambda one: (
                self._allocations.DeleteAllocations,
                alloc_pb.DeleteAllocationsRequest(consumer_uuid=one),
            ),
        )

    async def move(
        self, consumer: str, project: str, user: str, allocations: dict[str, dict[str, int]]
    ) -> None:
        """Replace the consumer's allocations with these, in one step."""
        held = await _call(
            "placement",
            self._allocations.GetAllocations,
            alloc_pb.GetAllocationsRequest(consumer_uuid=consumer),
        )
        request = alloc_pb.PutAllocationsRequest(
            consumer_uuid=consumer,
            project_id=project,
            user_id=user,
            allocations=[
                alloc_pb.Allocation(resource_provider_uuid=rp, resources=res)
                for rp, res in allocations.items()
            ],
        )
        if held.allocations:
            request.consumer_generation = held.consumer_generation
        await _call("placement", self._allocations.PutAllocations, request)

    async def release(self, consumer: str) -> None:
        await self._releases.release(consumer)

    async def consumers_on(self, provider: str) -> tuple[int, set[str]]:
        """The provider's generation, and every consumer holding something on it."""
        reply = await _call(
            "placement",
            self._providers.GetProviderAllocations,
            rp_pb.GetProviderAllocationsRequest(uuid=provider),
        )
        return reply.resource_provider_generation, {a.consumer_uuid for a in reply.allocations}

    async def generations(self, page_size: int, page_token: str) -> tuple[dict[str, int], str]:
        """A page of providers, in placement's order: uuid -> generation, and the
        next page's token ("" after the last page)."""
        reply = await _call(
            "placement",
            self._providers.ListResourceProviders,
            rp_pb.ListResourceProvidersRequest(page_size=page_size, page_token=page_token),
        )
        return {p.uuid: p.generation for p in reply.resource_providers}, reply.next_page_token

    async def held(self, consumer: str) -> dict[str, dict[str, int]]:
        """What the consumer holds, per provider."""
        reply = await _call(
            "placement",
            self._allocations.GetAllocations,
            alloc_pb.GetAllocationsRequest(consumer_uuid=consumer),
        )
        return {a.resource_provider_uuid: dict(a.resources) for a in reply.allocations}

    async def usage(self, provider: str) -> dict[str, tuple[int, int]]:
        """Capacity and use per resource class of one provider."""
        inventories = await _call(
            "placement",
            self._providers.GetInventories,
            rp_pb.GetInventoriesRequest(uuid=provider),
        )
        return {
            i.resource_class: (int((i.total - i.reserved) * (i.allocation_ratio or 1.0)), i.used)
            for i in inventories.inventories
        }


class Agents:
    """One channel (and stub: building one costs as much as a call's own Python)
    per host agent address, opened on first use."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, hostagent_pb2_grpc.HostAgentServiceStub] = {}

    def _stub(self, address: str) -> hostagent_pb2_grpc.HostAgentServiceStub:
        stub = self._stubs.get(address)
        if stub is None:
            self._channels[address] = grpc.aio.insecure_channel(address)
            stub = self._stubs[address] = hostagent_pb2_grpc.HostAgentServiceStub(
                self._channels[address]
            )
        return stub

    async def spawn(self, address: str, request: agent_pb.SpawnRequest) -> agent_pb.Server:
        return await _call("hostagent", self._stub(address).Spawn, request, AGENT_TIMEOUT_S)

    async def get(self, address: str, host: str, server_id: str) -> agent_pb.Server:
        return await _call(
            "hostagent",
            self._stub(address).GetServer,
            agent_pb.GetServerRequest(host=host, server_id=server_id),
        )

    async def destroy(self, address: str, host: str, server_id: str) -> None:
        await _call(
            "hostagent",
            self._stub(address).Destroy,
            agent_pb.DestroyRequest(host=host, server_id=server_id),
            AGENT_TIMEOUT_S,
        )

    async def reboot(self, address: str, host: str, server_id: str, hard: bool) -> agent_pb.Server:
        kind = agent_pb.REBOOT_TYPE_HARD if hard else agent_pb.REBOOT_TYPE_SOFT
        return await _call(
            "hostagent",
            self._stub(address).Reboot,
            agent_pb.RebootRequest(host=host, server_id=server_id, type=kind),
            AGENT_TIMEOUT_S,
        )

    async def power_off(self, address: str, host: str, server_id: str) -> agent_pb.Server:
        return await _call(
            "hostagent",
            self._stub(address).PowerOff,
            agent_pb.PowerOffRequest(host=host, server_id=server_id),
            AGENT_TIMEOUT_S,
        )

    async def power_on(self, address: str, host: str, server_id: str) -> agent_pb.Server:
        return await _call(
            "hostagent",
            self._stub(address).PowerOn,
            agent_pb.PowerOnRequest(host=host, server_id=server_id),
            AGENT_TIMEOUT_S,
        )

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
