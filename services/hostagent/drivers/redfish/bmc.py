"""One machine's BMC, spoken to with sushy, and sushy's errors as Stratus errors.

sushy blocks (it is requests underneath), so the driver calls these methods in
worker threads; a lock per machine keeps one request at a time on its HTTP
session. Connections are made on first use and made again after the BMC could
not be reached, so a BMC that restarts is picked up without restarting the agent.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import sushy
from sushy import auth as sushy_auth
from sushy import exceptions as sushy_exc

from services.common.errors import Internal, Unavailable
from services.hostagent.drivers.base import PowerState, driver_failed
from services.hostagent.drivers.redfish.machines import Machine

# A machine in transition counts as where it is going: one powering on is treated
# as on, so destroy and power off still force it off.
POWER_STATES = {
    sushy.PowerState.ON: PowerState.RUNNING,
    sushy.PowerState.POWERING_ON: PowerState.RUNNING,
    sushy.PowerState.OFF: PowerState.SHUTDOWN,
    sushy.PowerState.POWERING_OFF: PowerState.SHUTDOWN,
    sushy.PowerState.PAUSED: PowerState.PAUSED,
}
BOOT_TARGETS = {"pxe": sushy.BootSource.PXE, "hdd": sushy.BootSource.HDD}
CD_MEDIA = {sushy.VirtualMediaType.CD, sushy.VirtualMediaType.DVD}


class Bmc:
    def __init__(self, machine: Machine, timeout_s: float) -> None:
        self.machine = machine
        self._timeout_s = timeout_s
        self._root: sushy.Sushy | None = None
        self._system_path = machine.system
        self._lock = threading.Lock()

    def power_state(self) -> PowerState:
        with self._lock:
            return POWER_STATES.get(self._system().power_state, PowerState.NOSTATE)

    def hardware(self) -> tuple[int, int]:
        """(CPUs, memory in MB) as the BMC reports them; 0 for what it does not report."""
        with self._lock:
            system = self._system()
            try:
                cpus = system.processors.summary.count or 0
            except sushy_exc.MissingAttributeError:
                cpus = 0
            memory = system.memory_summary
            gib = memory.size_gib if memory is not None else None
            return cpus, round((gib or 0) * 1024)

    def reset(self, kind: sushy.ResetType) -> None:
        with self._lock:
            self._system().reset_system(kind)

    def boot_from(self, source: str) -> None:
        """Boot from now on from "pxe", "hdd", or an ISO at an http(s) URL (virtual media)."""
        with self._lock:
            system = self._system()
            if source in BOOT_TARGETS:
                target = BOOT_TARGETS[source]
            else:
                self._cd(system).insert_media(source, inserted=True, write_protected=True)
                target = sushy.BootSource.CD
            # Continuous, so every reboot and power on boots the server's image again.
            system.set_system_boot_options(
                target, enabled=sushy.BootSourceOverrideEnabled.CONTINUOUS
            )

    def eject(self) -> None:
        """Take out whatever virtual CD is in."""
        with self._lock:
            media = self._cd(self._system())
            if media.inserted:
                media.eject_media()

    def close(self) -> None:
        with self._lock:
            self._root = None

    def _system(self):
        if self._root is None:
            creds = self.machine.credentials
            self._root = sushy.Sushy(
                self.machine.bmc,
                auth=sushy_auth.BasicAuth(creds.username, creds.password.get_secret_value()),
                verify=self.machine.verify_tls,
                # One try per call: the agent's callers retry, and an unreachable BMC
                # must fail in seconds, not after sushy's ten tries three seconds apart.
                server_side_retries=1,
                server_side_retries_delay=1,
                read_timeout=self._timeout_s,
                connect_timeout=self._timeout_s,
            )
        if not self._system_path:
            members = self._root.get_system_collection().members_identities
            if len(members) != 1:
                raise sushy_exc.UnknownDefaultError(
                    entity="ComputerSystem",
                    error=f"the BMC has {len(members)} systems; name one with `system`",
                )
            self._system_path = members[0]
        return self._root.get_system(self._system_path)

    def _cd(self, system):
        for manager in system.managers:
            for media in manager.virtual_media.get_members():
                if CD_MEDIA & set(media.media_types or ()):
                    return media
        raise sushy_exc.MissingAttributeError(attribute="VirtualMedia (CD)", resource=system.path)

    @contextmanager
    def errors(self, action: str, server_id: str | None) -> Iterator[None]:
        """sushy's errors as Stratus errors that say which machine and what to check."""
        try:
            yield
        except sushy_exc.ConnectionError as exc:
            self.close()
            raise Unavailable(
                f"{action}: the BMC of machine {self.machine.name} cannot be reached: "
                f"{_short(exc)}; is it powered and on the network, and the address right?",
                code="hostagent.bmc_unreachable",
            ) from None
        except sushy_exc.AccessError as exc:
            self.close()
            raise Unavailable(
                f"{action}: the BMC of machine {self.machine.name} refused the credentials "
                f"(HTTP {exc.status_code}); check them in the machines file",
                code="hostagent.bmc_access_denied",
            ) from None
        except sushy_exc.SushyError as exc:
            detail = f"the BMC of machine {self.machine.name} says: {_short(exc)}"
            if server_id is None:
                raise Internal(
                    f"{action} failed: {detail}", code="hostagent.driver_error"
                ) from None
            raise driver_failed(action, server_id, detail) from None


def _short(exc: sushy_exc.SushyError) -> str:
    """sushy's message without the BMC's extended-information dump or urllib3's nesting."""
    text = str(exc).split(" Extended information:")[0]
    if isinstance(exc, sushy_exc.ConnectionError):
        # "Unable to connect to <url>. Error: HTTPConnectionPool(...): ... [Errno 111] ...'))"
        reason = re.search(r"\[Errno -?\d+\] [^'\")]+|timed out[^'\")]*", text)
        if reason:
            return f"{text.split('. Error:')[0]}: {reason.group(0)}"
    return text
