"""Tell placement what this host can hold: its provider, inventories and traits.

On start and whenever the driver's view of the host changes, the agent makes
sure its provider exists (same uuid across restarts), replaces its
inventories with the driver's totals (reserved amounts and allocation ratios
from configuration) and sets its traits. Every write carries the provider
generation; when someone else wrote in between (placement answers
concurrent_update), the agent re-reads and tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import grpc
from stratus.placement.v1 import resource_providers_pb2 as rp_pb
from stratus.placement.v1 import resource_providers_pb2_grpc

from services.common.config import HostAgentSection
from services.common.errors import AlreadyExists
from services.hostagent.drivers.base import Driver, HostDescription
from services.hostagent.identity import HostIdentity

log = logging.getLogger(__name__)

GENERATION_RETRIES = 5
RETRY_BACKOFF_S = (0.5, 1, 2, 5, 10)


def driver_trait(driver_name: str) -> str:
    return f"CUSTOM_DRIVER_{driver_name.upper()}"


@dataclass(frozen=True)
class HostReport:
    """What the agent last told placement; a new report is sent when it differs."""

    inventories: tuple[tuple[str, int, int, float], ...]
    traits: frozenset[str]


class InventoryReporter:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        identity: HostIdentity,
        driver: Driver,
        section: HostAgentSection,
        metadata: tuple[tuple[str, str], ...],
    ) -> None:
        self._stub = resource_providers_pb2_grpc.ResourceProviderServiceStub(channel)
        self._identity = identity
        self._driver = driver
        self._section = section
        self._metadata = metadata
        self.last: HostReport | None = None

    def wanted(self, host: HostDescription) -> HostReport:
        s, r = self._section, host.resources
        return HostReport(
            inventories=(
                ("VCPU", r.vcpus, s.reserved_vcpus, s.cpu_allocation_ratio),
                ("MEMORY_MB", r.ram_mb, s.reserved_ram_mb, s.ram_allocation_ratio),
                ("DISK_GB", r.disk_gb, s.reserved_disk_gb, s.disk_allocation_ratio),
            ),
            traits=host.traits | {driver_trait(host.driver)},
        )

    async def report_if_changed(self) -> bool:
        """Report when the host differs from the last report; True if it reported."""
        wanted = self.wanted(await self._driver.describe_host())
        if wanted == self.last:
            return False
        await self._ensure_provider()
        await self._retry_on_conflict(self._set_inventories, wanted)
        await self._retry_on_conflict(self._set_traits, wanted)
        self.last = wanted
        log.info(
            "reported host %s to placement as provider %s: %s; traits %s",
            self._identity.host,
            self._identity.provider_uuid,
            ", ".join(
                f"{rc} {total} (reserved {res}, ratio {ratio:g})"
                for rc, total, res, ratio in wanted.inventories
            ),
            ", ".join(sorted(wanted.traits)),
        )
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Report now, then re-check every inventory_interval_s until stop; never crash."""
        failures = 0
        while not stop.is_set():
            try:
                await self.report_if_changed()
                failures = 0
                wait = self._section.inventory_interval_s
            except (grpc.aio.AioRpcError, AlreadyExists) as exc:
                wait = RETRY_BACKOFF_S[min(failures, len(RETRY_BACKOFF_S) - 1)]
                level = logging.WARNING if failures == 0 else logging.DEBUG
                log.log(level, "cannot report to placement (retrying in %ss): %s", wait, _why(exc))
                failures += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    async def _call(self, method, request):
        return await method(request, metadata=self._metadata, timeout=10)

    async def _ensure_provider(self) -> None:
        uuid, host = self._identity.provider_uuid, self._identity.host
        try:
            provider = await self._call(
                self._stub.GetResourceProvider, rp_pb.GetResourceProviderRequest(uuid=uuid)
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
        else:
            if provider.name != host:  # the host was renamed
                await self._call(
                    self._stub.UpdateResourceProvider,
                    rp_pb.UpdateResourceProviderRequest(
                        uuid=uuid,
                        generation=provider.generation,
                        name=host,
                        parent_uuid=provider.parent_uuid,
                    ),
                )
            return
        try:
            await self._call(
                self._stub.CreateResourceProvider,
                rp_pb.CreateResourceProviderRequest(
                    resource_provider=rp_pb.ResourceProvider(uuid=uuid, name=host)
                ),
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
            # Another provider has this name: another agent runs under the same
            # host name, or this host lost its state directory. Adopting it
            # silently could hijack another host's provider, so say what to do.
            raise AlreadyExists(
                f"placement already has a provider named {host!r} with another uuid; "
                f"if it is this host's, set hostagent.provider_uuid to its uuid "
                f"(this agent's is {uuid}); otherwise give this host another name"
            ) from exc

    async def _retry_on_conflict(self, write, wanted: HostReport) -> None:
        for attempt in range(GENERATION_RETRIES):
            provider = await self._call(
                self._stub.GetResourceProvider,
                rp_pb.GetResourceProviderRequest(uuid=self._identity.provider_uuid),
            )
            try:
                await write(provider.generation, wanted)
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.ABORTED or attempt == GENERATION_RETRIES - 1:
                    raise
                log.debug("provider generation moved; retrying %s", write.__name__)

    async def _set_inventories(self, generation: int, wanted: HostReport) -> None:
        await self._call(
            self._stub.ReplaceInventories,
            rp_pb.ReplaceInventoriesRequest(
                uuid=self._identity.provider_uuid,
                resource_provider_generation=generation,
                inventories=[
                    rp_pb.Inventory(
                        resource_class=rc,
                        total=total,
                        reserved=min(reserved, total),
                        allocation_ratio=ratio,
                    )
                    for rc, total, reserved, ratio in wanted.inventories
                ],
            ),
        )

    async def _set_traits(self, generation: int, wanted: HostReport) -> None:
        current = await self._call(
            self._stub.GetProviderTraits,
            rp_pb.GetProviderTraitsRequest(uuid=self._identity.provider_uuid),
        )
        # The agent owns standard traits and its driver trait; CUSTOM_* traits an
        # operator set by hand (say CUSTOM_GPU_ROOM_3) are kept.
        operator_set = {
            t
            for t in current.traits
            if t.startswith("CUSTOM_") and not t.startswith("CUSTOM_DRIVER_")
        }
        traits = sorted(wanted.traits | operator_set)
        if traits == sorted(current.traits):
            return
        await self._call(
            self._stub.SetProviderTraits,
            rp_pb.SetProviderTraitsRequest(
                uuid=self._identity.provider_uuid,
                resource_provider_generation=generation,
                traits=traits,
            ),
        )


def _why(exc: Exception) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)
