"""What happens to a server after it is built: reboot, stop, start, delete,
and power changes its host reports.

Each request checks and records its task state in one conditional write
(so concurrent requests cannot both start), answers at once, and finishes in
the background, closing its action with the result. Delete works when the
host is down too: the server is then removed here only (the host agent cleans
what it finds when it is back — see the notes on issue 7).
"""

from __future__ import annotations

import logging

from services.api_gateway.build import Peers
from services.api_gateway.models import ServerRow
from services.api_gateway.record_writer import RecordWriter, Transition
from services.api_gateway.servers import (
    ACTIVE,
    DELETED,
    ERROR,
    REBOOT,
    SHUTOFF,
    ServerRecords,
    now,
    power_name,
)
from services.common.context import RequestContext
from services.common.errors import Conflict, StratusError
from services.common.liveness import HostLiveness

log = logging.getLogger(__name__)

# Power states the hypervisor reports, and the status a settled server shows for each.
_STATUS_FOR_POWER = {"RUNNING": ACTIVE, "SHUTDOWN": SHUTOFF, "CRASHED": SHUTOFF, "PAUSED": ACTIVE}


class Operations:
    def __init__(
        self,
        records: ServerRecords,
        writer: RecordWriter,
        peers: Peers,
        liveness: HostLiveness,
        background,
    ) -> None:
        self._records = records
        self._writer = writer
        self._peers = peers
        self._liveness = liveness
        self._background = background

    def host_up(self, host: str) -> bool:
        return bool(host) and self._liveness.is_alive(host)

    def _address(self, row: ServerRow) -> str:
        live = self._liveness.value_of(row.host) or {}
        return live.get("address") or row.host_address

    async def reboot(self, ctx: RequestContext, server_id: str, hard: bool) -> ServerRow:
        row = await self._records.get(ctx, server_id)
        allowed = (ACTIVE, SHUTOFF, ERROR) if hard else (ACTIVE,)
        self._require_host_up(row, "reboot", "reboot_hard" if hard else "reboot_soft")
        task = "rebooting_hard" if hard else "rebooting"
        await self._records.begin_task(ctx, row, "reboot", task, allowed, status=REBOOT)
        self._background(self._power(row, "reboot", hard=hard))
        return await self._records.get(ctx, server_id)

    async def stop(self, ctx: RequestContext, server_id: str) -> ServerRow:
        row = await self._records.get(ctx, server_id)
        self._require_host_up(row, "stop", "power_off")
        await self._records.begin_task(ctx, row, "stop", "powering-off", (ACTIVE, ERROR))
        self._background(self._power(row, "stop"))
        return await self._records.get(ctx, server_id)

    async def start(self, ctx: RequestContext, server_id: str) -> ServerRow:
        row = await self._records.get(ctx, server_id)
        self._require_host_up(row, "start", "power_on")
        await self._records.begin_task(ctx, row, "start", "powering-on", (SHUTOFF,))
        self._background(self._power(row, "start"))
        return await self._records.get(ctx, server_id)

    def _require_host_up(self, row: ServerRow, action: str, capability: str) -> None:
        if row.host and not self.host_up(row.host):
            raise Conflict(
                f"cannot {action} server {row.id}: its host {row.host} is down; "
                "try again when the host is back",
                code="compute.host_down",
            )
        live = self._liveness.value_of(row.host) or {}
        # Agents publish what their driver can do; an agent that says nothing can do it all.
        offered = live.get("capabilities")
        if row.host and offered is not None and capability not in offered:
            raise Conflict(
                f"cannot {action} server {row.id}: its host's {live.get('driver', '')} driver "
                "does not support it",
                code="compute.unsupported_operation",
            )

    async def _power(self, row: ServerRow, action: str, hard: bool = False) -> None:
        agents, address = self._peers.agents, self._address(row)
        try:
            if action == "reboot":
                server = await agents.reboot(address, row.host, row.id, hard)
            elif action == "stop":
                server = await agents.power_off(address, row.host, row.id)
            else:
                server = await agents.power_on(address, row.host, row.id)
        except StratusError as exc:
            # The server is as it was; the action says what went wrong.
            before = row.status if row.status != REBOOT else ACTIVE
            await self._records.update(row.id, task_state="", status=before)
            await self._records.finish_action(row.id, action, "error", exc.message)
            return
        power = power_name(server.power_state)
        await self._records.update(
            row.id, task_state="", power_state=power, status=_STATUS_FOR_POWER.get(power, ERROR)
        )
        await self._records.finish_action(row.id, action, "success")

    async def delete(self, ctx: RequestContext, server_id: str) -> ServerRow:
        # A delete may interrupt a build or an action; a second delete changes nothing.
        row = await self._writer.begin_delete(ctx, server_id)
        if row is None:  # deleting already, deleted, or not the caller's to see
            return await self._records.get(ctx, server_id)
        self._background(self._delete(row))
        return row

    async def _delete(self, row: ServerRow) -> None:
        """Destroy on the host the row names, release, mark deleted. A build that
        records a host after begin_delete finds the server deleting and cleans
        up what it made itself (build.py)."""
        message = ""
        if row.host:
            if self.host_up(row.host):
                try:
                    await self._peers.agents.destroy(self._address(row), row.host, row.id)
                except StratusError as exc:
                    await self._records.update(row.id, task_state="")
                    await self._records.finish_action(row.id, "delete", "error", exc.message)
                    return
            else:
                message = f"host {row.host} was down: removed here only"
        # Each release is idempotent, so a retried delete never gives back twice.
        await self._peers.placement.release(row.id)
        await self._peers.quota.release(row.id)
        await self._writer.move(
            Transition(
                row.id,
                None,
                dict(status=DELETED, task_state="", power_state="NOSTATE", deleted_at=now()),
                close=("delete", "success", message),
            )
        )

    async def resume_delete(self, row: ServerRow) -> None:
        await self._delete(row)  # every step is idempotent

    async def resume_power(self, row: ServerRow) -> None:
        """An action cut short: read the state from the host and settle the server."""
        if not self.host_up(row.host):
            return  # the host tells us when it is back; try again on the next pass
        try:
            server = await self._peers.agents.get(self._address(row), row.host, row.id)
        except StratusError as exc:
            log.warning("cannot read %s from %s: %s", row.id, row.host, exc.message)
            return
        power = power_name(server.power_state)
        if await self._records.update_if(
            row.id,
            row.task_state,
            task_state="",
            power_state=power,
            status=_STATUS_FOR_POWER.get(power, ERROR),
        ):
            action = {
                "rebooting": "reboot",
                "rebooting_hard": "reboot",
                "powering-off": "stop",
                "powering-on": "start",
            }.get(row.task_state, "")
            await self._records.finish_action(
                row.id, action, "error", f"interrupted; the host says {power}"
            )

    async def report_power(self, host: str, changes: dict[str, str]) -> list[str]:
        """Apply power changes a host saw outside Stratus; ids it does not know."""
        known = {row.id: row for row in await self._records.on_host(host)}
        for server_id, power in changes.items():
            row = known.get(server_id)
            if row is None or row.task_state:
                continue  # a task in progress will set the state itself
            status = row.status
            if status in (ACTIVE, SHUTOFF):
                status = _STATUS_FOR_POWER.get(power, status)
            await self._records.update(server_id, power_state=power, status=status)
        return sorted(set(changes) - set(known))
