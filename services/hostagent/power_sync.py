"""Notice power changes made outside Stratus and tell api_gateway.

A guest that shuts itself down, or an operator running `virsh destroy`,
changes a server's power state without any Stratus call. Every
power_sync_interval_s the agent compares the driver's view with what it last
reported and sends the differences (a server that vanished is NOSTATE).
A change stays pending until api_gateway accepts it, so an api_gateway that
is down or does not implement the call yet costs a log line, not a lost change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc
from stratus.compute.v1 import host_events_pb2, host_events_pb2_grpc

from services.hostagent.drivers.base import Driver, PowerState
from services.hostagent.protos import power_state_to_proto

log = logging.getLogger(__name__)

REPORT_BATCH = 1000

Report = Callable[[dict[str, PowerState]], Awaitable[None]]


class PowerStateSync:
    def __init__(self, driver: Driver, report: Report, interval_s: float) -> None:
        self._driver = driver
        self._report = report
        self._interval_s = interval_s
        # What api_gateway has been told, or learned from a Stratus call's answer.
        self._known: dict[str, PowerState] = {}
        self.pending: dict[str, PowerState] = {}
        self._failing = False

    def observed(self, server_id: str, state: PowerState) -> None:
        """A Stratus call just set this state and its caller saw the answer."""
        self._known[server_id] = state
        self.pending.pop(server_id, None)

    def forget(self, server_id: str) -> None:
        """Destroyed through Stratus: nothing to report."""
        self._known.pop(server_id, None)
        self.pending.pop(server_id, None)

    async def sync_once(self) -> None:
        now = {s.server_id: s.power_state for s in await self._driver.list_servers()}
        for server_id, state in now.items():
            if self._known.get(server_id) != state:
                self.pending[server_id] = state
        for server_id in self._known.keys() - now.keys():
            self.pending[server_id] = PowerState.NOSTATE
        self._known = now
        if self.pending:
            await self._flush()

    async def _flush(self) -> None:
        batch = dict(list(self.pending.items())[:REPORT_BATCH])
        try:
            await self._report(batch)
        except grpc.aio.AioRpcError as exc:
            # Logged once per outage; changes stay pending and go with the next pass.
            level = logging.DEBUG if self._failing else logging.WARNING
            log.log(
                level,
                "cannot report %d power state change(s) to api_gateway, will retry: %s: %s",
                len(batch),
                exc.code().name,
                exc.details(),
            )
            self._failing = True
            return
        if self._failing:
            log.info("api_gateway accepts power state reports again")
        self._failing = False
        for server_id, state in batch.items():
            if self.pending.get(server_id) == state:
                del self.pending[server_id]

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self._interval_s)
            except TimeoutError:
                pass
            else:
                return
            try:
                await self.sync_once()
            except Exception:  # a driver hiccup must not end the loop
                log.exception("power state sync failed; trying again next interval")


def api_gateway_reporter(
    channel: grpc.aio.Channel, host: str, metadata: tuple[tuple[str, str], ...]
) -> Report:
    stub = host_events_pb2_grpc.HostEventServiceStub(channel)

    async def report(changes: dict[str, PowerState]) -> None:
        await stub.ReportPowerStates(
            host_events_pb2.ReportPowerStatesRequest(
                host=host,
                changes=[
                    host_events_pb2.PowerStateChange(
                        server_id=server_id, power_state=power_state_to_proto(state)
                    )
                    for server_id, state in changes.items()
                ],
            ),
            metadata=metadata,
            timeout=10,
        )

    return report
