"""The per-process loops that stand in for each host's own background tasks.

A real agent runs an inventory loop and a power-sync loop per host. Ten
thousand hosts in one process would be twenty thousand tasks waking on their
own, and a start that sends every host's registration to placement at once.
Instead one loop per process walks its hosts:

* inventory: every host's report (the real InventoryReporter, so the same
  provider, inventories and driver trait as a real fake agent), a bounded
  number at a time so placement sees a steady load; hosts that failed are
  retried with backoff; then a re-check every inventory_interval_s (nothing
  is sent while a host's capacity is unchanged, which for the fake driver is always).
* power states: every power_sync_interval_s, each host's PowerStateSync pass.
  The fake driver's power states change only through Stratus calls, whose
  answers already carry them, so a pass sends nothing unless a test changed a
  state "outside Stratus"; a report is still per host, as the API takes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

import grpc

from services.common.errors import StratusError
from services.hostagent.fleet.hosts import SimulatedHost
from services.hostagent.inventory import RETRY_BACKOFF_S

log = logging.getLogger(__name__)

# Reports in flight per simulator process: a few processes together keep
# placement busy without queueing past its call timeouts.
REPORT_CONCURRENCY = 16


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def report_inventories(
    hosts: Mapping[str, SimulatedHost], interval_s: float, stop: asyncio.Event
) -> None:
    """Report every host now (bounded), retry the failed ones, re-check every interval_s."""
    failures = 0
    while not stop.is_set():
        started = time.monotonic()
        reported, failed = await _report_all(list(hosts.values()))
        if reported:
            log.info(
                "reported %d host(s) to placement in %.1f s", reported, time.monotonic() - started
            )
        if failed:
            wait = RETRY_BACKOFF_S[min(failures, len(RETRY_BACKOFF_S) - 1)]
            failures += 1
            log.warning(
                "cannot report %d host(s) to placement (retrying in %ss): %s",
                len(failed),
                wait,
                failed[0],
            )
        else:
            failures, wait = 0, interval_s
        await _wait(stop, wait)


async def _report_all(hosts: list[SimulatedHost]) -> tuple[int, list[str]]:
    """(hosts that sent a report, why each failed host failed)."""
    pending = iter(hosts)
    reported, failed = 0, []

    async def worker() -> None:
        nonlocal reported
        for host in pending:
            try:
                if await host.inventory.report_if_changed():
                    reported += 1
            except grpc.aio.AioRpcError as exc:
                failed.append(f"{host.identity.host}: {exc.code().name}: {exc.details()}")
            except StratusError as exc:
                failed.append(f"{host.identity.host}: {exc.message}")

    await asyncio.gather(*(worker() for _ in range(REPORT_CONCURRENCY)))
    return reported, failed


def reported_count(hosts: Mapping[str, SimulatedHost]) -> int:
    return sum(host.inventory.last is not None for host in hosts.values())


async def sync_power_states(
    hosts: Mapping[str, SimulatedHost], interval_s: float, stop: asyncio.Event
) -> None:
    while True:
        await _wait(stop, interval_s)
        if stop.is_set():
            return
        for host in list(hosts.values()):
            try:
                await host.sync.sync_once()
            except Exception:  # one host's hiccup must not end every host's sync
                log.exception("power state sync of %s failed", host.identity.host)
