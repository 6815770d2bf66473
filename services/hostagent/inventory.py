"""Tell placement what this host can hold: its provider, inventories and traits.

On start and whenever the driver's view of the host changes, the agent makes
sure its provider exists (same uuid across restarts), replaces its
inventories with the driver's totals (reserved amounts and allocation ratios
from configuration) and sets its traits. Every write carries the provider
generation; when someone else wrote in between (placement answers
concurrent_update), the agent re-reads and tries again.

A driver that hands out whole units (redfish: bare-metal machines) describes
them as child providers: each becomes a provider below the host's, named
"<host>/<child>", whose inventories allow only whole allocations
(min_unit = max_unit = total). The host's own provider then offers no VCPU,
MEMORY_MB or DISK_GB, and children the driver no longer reports are deleted
(one still holding allocations is kept, with a warning).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass

import grpc
from stratus.placement.v1 import resource_providers_pb2 as rp_pb
from stratus.placement.v1 import resource_providers_pb2_grpc

from services.common.config import HostAgentSection
from services.common.errors import AlreadyExists, StratusError
from services.hostagent.drivers.base import ChildProvider, Driver, HostDescription
from services.hostagent.identity import HostIdentity

log = logging.getLogger(__name__)

GENERATION_RETRIES = 5
RETRY_BACKOFF_S = (0.5, 1, 2, 5, 10)


def driver_trait(driver_name: str) -> str:
    return f"CUSTOM_DRIVER_{driver_name.upper()}"


def child_provider_name(host: str, child: str) -> str:
    return f"{host}/{child}"


@dataclass(frozen=True)
class HostReport:
    """What the agent last told placement; a new report is sent when it differs."""

    inventories: tuple[tuple[str, int, int, float], ...]
    traits: frozenset[str]
    children: tuple[ChildProvider, ...] = ()


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
        # A uuid made just now needs no lookup before its provider is created:
        # one call less a fresh host (10,000 of them when a fleet first starts).
        self._look_up = not identity.new

    def wanted(self, host: HostDescription) -> HostReport:
        s, r = self._section, host.resources
        return HostReport(
            # With children, the room is theirs: none of it may be had from the host itself.
            inventories=()
            if host.children
            else (
                ("VCPU", r.vcpus, s.reserved_vcpus, s.cpu_allocation_ratio),
                ("MEMORY_MB", r.ram_mb, s.reserved_ram_mb, s.ram_allocation_ratio),
                ("DISK_GB", r.disk_gb, s.reserved_disk_gb, s.disk_allocation_ratio),
            ),
            traits=host.traits | {driver_trait(host.driver)},
            children=host.children,
        )

    async def report_if_changed(self) -> bool:
        """Report when the host differs from the last report; True if it reported."""
        wanted = self.wanted(await self._driver.describe_host())
        if wanted == self.last:
            return False
        uuid = self._identity.provider_uuid
        generation, created = await self._ensure_provider()
        # Each write answers the provider's new generation, which the next one
        # uses: no read before a write unless someone else wrote in between.
        # A provider made just now has no traits and no children yet, so
        # nothing of them needs reading (a fresh host costs 4 calls, not 8; 3
        # if its uuid is new).
        generation = await self._with_generation(
            uuid, functools.partial(self._set_inventories, wanted=wanted), generation
        )
        await self._with_generation(
            uuid,
            functools.partial(self._set_traits, wanted=wanted, fresh=created),
            generation,
        )
        await self._report_children(wanted.children, fresh=created)
        self.last = wanted
        log.info(
            "reported host %s to placement as provider %s: %s; traits %s",
            self._identity.host,
            self._identity.provider_uuid,
            ", ".join(
                f"{rc} {total} (reserved {res}, ratio {ratio:g})"
                for rc, total, res, ratio in wanted.inventories
            )
            or "no inventory of its own",
            ", ".join(sorted(wanted.traits)),
        )
        if wanted.children:
            log.info(
                "reported %d child provider(s) of host %s: %s",
                len(wanted.children),
                self._identity.host,
                ", ".join(f"{c.name} {dict(c.resources)}" for c in wanted.children),
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
            except (grpc.aio.AioRpcError, StratusError) as exc:  # placement or driver down
                wait = RETRY_BACKOFF_S[min(failures, len(RETRY_BACKOFF_S) - 1)]
                level = logging.WARNING if failures == 0 else logging.DEBUG
                log.log(level, "cannot report to placement (retrying in %ss): %s", wait, _why(exc))
                failures += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    async def _call(self, method, request):
        return await method(request, metadata=self._metadata, timeout=10)

    async def _ensure_provider(self) -> tuple[int, bool]:
        """The provider's generation, and whether it was created just now."""
        uuid, host = self._identity.provider_uuid, self._identity.host
        provider = await self._existing(uuid) if self._look_up else None
        # From now on always: a create cut short may have landed all the same.
        self._look_up = True
        if provider is not None:
            if provider.name != host:  # the host was renamed
                provider = await self._call(
                    self._stub.UpdateResourceProvider,
                    rp_pb.UpdateResourceProviderRequest(
                        uuid=uuid,
                        generation=provider.generation,
                        name=host,
                        parent_uuid=provider.parent_uuid,
                    ),
                )
            return provider.generation, False
        try:
            provider = await self._call(
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
        return provider.generation, True

    async def _existing(self, uuid: str) -> rp_pb.ResourceProvider | None:
        try:
            return await self._call(
                self._stub.GetResourceProvider, rp_pb.GetResourceProviderRequest(uuid=uuid)
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return None

    async def _with_generation(self, uuid: str, write, generation: int | None = None) -> int:
        """write(generation) on provider uuid, which answers the new generation; the
        generation is read when not known, and again while someone else writes in between."""
        for _ in range(GENERATION_RETRIES - 1):
            try:
                return await self._write_at(uuid, write, generation)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.ABORTED:
                    raise
                log.debug("generation of provider %s moved; retrying", uuid)
                generation = None
        return await self._write_at(uuid, write, generation)

    async def _write_at(self, uuid: str, write, generation: int | None) -> int:
        if generation is None:
            provider = await self._call(
                self._stub.GetResourceProvider, rp_pb.GetResourceProviderRequest(uuid=uuid)
            )
            generation = provider.generation
        return await write(generation)

    async def _set_inventories(self, generation: int, wanted: HostReport) -> int:
        reply = await self._call(
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
        return reply.resource_provider_generation

    async def _set_traits(self, generation: int, wanted: HostReport, fresh: bool) -> int:
        current = []
        if not fresh:
            reply = await self._call(
                self._stub.GetProviderTraits,
                rp_pb.GetProviderTraitsRequest(uuid=self._identity.provider_uuid),
            )
            current = list(reply.traits)
        # The agent owns standard traits and its driver trait; CUSTOM_* traits an
        # operator set by hand (say CUSTOM_GPU_ROOM_3) are kept.
        operator_set = {
            t for t in current if t.startswith("CUSTOM_") and not t.startswith("CUSTOM_DRIVER_")
        }
        traits = sorted(wanted.traits | operator_set)
        if traits == sorted(current):
            return generation
        reply = await self._call(
            self._stub.SetProviderTraits,
            rp_pb.SetProviderTraitsRequest(
                uuid=self._identity.provider_uuid,
                resource_provider_generation=generation,
                traits=traits,
            ),
        )
        return reply.resource_provider_generation

    # Child providers: the units a driver hands out whole.

    async def _report_children(self, children: tuple[ChildProvider, ...], fresh: bool) -> None:
        for child in children:
            await self._ensure_child(child)
            await self._with_generation(
                child.uuid, functools.partial(self._set_whole_inventories, child)
            )
        if not fresh:  # a host made just now has no stale children
            await self._delete_stale_children({c.uuid for c in children})

    async def _ensure_child(self, child: ChildProvider) -> None:
        root = self._identity.provider_uuid
        name = child_provider_name(self._identity.host, child.name)
        try:
            provider = await self._call(
                self._stub.GetResourceProvider, rp_pb.GetResourceProviderRequest(uuid=child.uuid)
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
        else:
            if (provider.name, provider.parent_uuid) != (name, root):  # host renamed, say
                await self._call(
                    self._stub.UpdateResourceProvider,
                    rp_pb.UpdateResourceProviderRequest(
                        uuid=child.uuid, generation=provider.generation, name=name, parent_uuid=root
                    ),
                )
            return
        try:
            await self._call(
                self._stub.CreateResourceProvider,
                rp_pb.CreateResourceProviderRequest(
                    resource_provider=rp_pb.ResourceProvider(
                        uuid=child.uuid, name=name, parent_uuid=root
                    )
                ),
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
            raise AlreadyExists(
                f"placement already has a provider named {name!r} with another uuid; if this "
                f"host lost its driver state, delete that provider once it holds no servers "
                f"(this agent's is {child.uuid})"
            ) from exc

    async def _set_whole_inventories(self, child: ChildProvider, generation: int) -> int:
        reply = await self._call(
            self._stub.ReplaceInventories,
            rp_pb.ReplaceInventoriesRequest(
                uuid=child.uuid,
                resource_provider_generation=generation,
                inventories=[
                    rp_pb.Inventory(resource_class=rc, total=total, min_unit=total, max_unit=total)
                    for rc, total in sorted(child.resources.items())
                ],
            ),
        )
        return reply.resource_provider_generation

    async def _delete_stale_children(self, reported: set[str]) -> None:
        """Delete this host's "<host>/..." children the driver no longer reports."""
        root, prefix = self._identity.provider_uuid, child_provider_name(self._identity.host, "")
        stale, token = [], ""
        while True:
            page = await self._call(
                self._stub.ListResourceProviders,
                rp_pb.ListResourceProvidersRequest(in_tree=root, page_size=1000, page_token=token),
            )
            stale += [
                p
                for p in page.resource_providers
                if p.parent_uuid == root and p.name.startswith(prefix) and p.uuid not in reported
            ]
            token = page.next_page_token
            if not token:
                break
        for provider in stale:
            try:
                await self._call(
                    self._stub.DeleteResourceProvider,
                    rp_pb.DeleteResourceProviderRequest(uuid=provider.uuid),
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    continue
                # Still holding a server's allocation: kept until that server is gone.
                log.warning("cannot delete stale provider %s yet: %s", provider.name, _why(exc))
            else:
                log.info("deleted provider %s: the driver no longer reports it", provider.name)


def _why(exc: Exception) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)
