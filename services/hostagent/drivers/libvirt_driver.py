"""The libvirt driver: each server is a persistent libvirt domain on one connection.

The domain's uuid is the server id and its name `stratus-<id>`; a <metadata>
element in our namespace carries what libvirt does not know (the Stratus name,
image and disk size) and marks the domain as ours. Domains without it belong
to someone else and are never listed or touched.

libvirt calls block, so each runs in a worker thread, one at a time under a
lock: that keeps look-up-then-act sequences (idempotent spawn, power calls)
atomic without per-server bookkeeping.

Limitation: the disk is the image file itself, marked <transient/>, so the
shared base image is never written and every write of the guest is lost when
it powers off. Per-server overlays and volumes come later. On qemu, libvirt
keeps those writes in `<image>.TRANSIENT-<domain>` next to the image, so
image_dir must be writable by qemu.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar
from xml.sax.saxutils import escape

import libvirt
import os_traits

from services.common.errors import Internal, InvalidArgument, NotFound, Unavailable
from services.hostagent.drivers.base import (
    ALL_CAPABILITIES,
    DriverServer,
    HostDescription,
    HostResources,
    PowerState,
    ServerSpec,
    check_fits,
    driver_failed,
    image_not_found,
    server_not_found,
)

NAMESPACE = "https://stratus.dev/xmlns/server/1"
NAME_PREFIX = "stratus-"
DRIVER_ERROR = "hostagent.driver_error"  # the code of base.driver_failed()
# How long power_off lets the guest shut down on ACPI before pulling the plug.
SHUTDOWN_TIMEOUT_S = 20.0
SHUTDOWN_POLL_S = 0.2
QCOW2_MAGIC = b"QFI\xfb"
POWER_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: PowerState.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: PowerState.SHUTDOWN,
    libvirt.VIR_DOMAIN_CRASHED: PowerState.CRASHED,
}
# NVRAM and checkpoint flags are left out: we boot no UEFI guests, make no
# checkpoints, and the test driver rejects both flags.
UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
)

T = TypeVar("T")

# libvirt reports every error on stderr as well as raising it; the exception is enough.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


class LibvirtDriver:
    name = "libvirt"
    capabilities = ALL_CAPABILITIES

    def __init__(self, uri: str, image_dir: Path, disk_gb: int) -> None:
        self.uri = uri
        self.image_dir = image_dir
        self.disk_gb = disk_gb
        # Opened on first use, in a worker thread: constructing the driver does no I/O.
        self._conn: libvirt.virConnect | None = None
        self._guest: tuple[str, str] = ("", "")  # (domain type, arch) from capabilities
        self._lock = threading.Lock()

    async def describe_host(self) -> HostDescription:
        return await self._run("describe", None, self._describe)

    async def spawn(self, spec: ServerSpec) -> DriverServer:
        return await self._run("spawn", spec.server_id, self._spawn, spec)

    async def destroy(self, server_id: str) -> None:
        await self._run("destroy", server_id, self._destroy, server_id)

    async def reboot(self, server_id: str, hard: bool) -> DriverServer:
        action = "hard reboot" if hard else "soft reboot"
        return await self._run(action, server_id, self._reboot, server_id, hard)

    async def power_off(self, server_id: str) -> DriverServer:
        # A graceful ACPI shutdown first, polled outside the lock so other calls go on;
        # then a hard power off, as Nova's stop does after its grace period.
        if await self._run("power off", server_id, self._request_shutdown, server_id):
            for _ in range(round(SHUTDOWN_TIMEOUT_S / SHUTDOWN_POLL_S)):
                server = await self.get(server_id)
                if server.power_state is PowerState.SHUTDOWN:
                    return server
                await asyncio.sleep(SHUTDOWN_POLL_S)
        return await self._run("power off", server_id, self._power_off_now, server_id)

    async def power_on(self, server_id: str) -> DriverServer:
        return await self._run("power on", server_id, self._power_on, server_id)

    async def get(self, server_id: str) -> DriverServer:
        return await self._run("look-up", server_id, self._get, server_id)

    async def list_servers(self) -> list[DriverServer]:
        return await self._run("list", None, self._list)

    async def close(self) -> None:
        await asyncio.to_thread(self._disconnect)

    async def _run(
        self, action: str, server_id: str | None, call: Callable[..., T], *args: object
    ) -> T:
        return await asyncio.to_thread(self._locked, action, server_id, call, *args)

    # Everything below runs in a worker thread, holding the lock.

    def _locked(
        self, action: str, server_id: str | None, call: Callable[..., T], *args: object
    ) -> T:
        with self._lock, _failures(action, server_id):
            if self._conn is None or not self._conn.isAlive():
                self._connect()
            return call(*args)

    def _connect(self) -> None:
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            raise Unavailable(
                f"cannot connect to libvirt at {self.uri}: {exc.get_error_message()}; "
                "is libvirtd running and the URI right?",
                code="hostagent.hypervisor_unavailable",
            ) from None
        caps = ET.fromstring(conn.getCapabilities())
        host_arch = caps.findtext("host/cpu/arch")
        guests = [g for g in caps.findall("guest") if g.findtext("os_type") == "hvm"]
        guest = next((g for g in guests if g.find("arch").get("name") == host_arch), guests[0])
        types = [d.get("type") for d in guest.findall("arch/domain")]
        # libvirt lists kvm only where /dev/kvm is usable; qemu (emulation) works everywhere.
        kind = next((t for t in ("kvm", "qemu") if t in types), types[0])
        self._conn, self._guest = conn, (kind, guest.find("arch").get("name"))

    def _disconnect(self) -> None:
        with self._lock:  # not under a call still using the connection
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    def _describe(self) -> HostDescription:
        conn = self._conn
        arch, ram_mb, *_, threads = conn.getInfo()
        # Free memory is ours to compute: the test driver's getFreeMemory() is 0 or wrong.
        active = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        used_mb = sum(d.info()[2] for d in active) // 1024
        kind = conn.getType().lower()
        # The test driver's hypervisor version (2) means nothing; leave it out.
        hypervisor = "" if kind == "test" else f" {_version(conn.getVersion())}"
        traits = {"COMPUTE_NET_ATTACH_INTERFACE", f"HW_ARCH_{arch.upper()}"}
        if threads > 1:
            traits.add("HW_CPU_HYPERTHREADING")
        return HostDescription(
            driver=self.name,
            hypervisor_version=f"libvirt {_version(conn.getLibVersion())} ({kind}{hypervisor})",
            resources=self._resources(),
            free_ram_mb=max(0, ram_mb - used_mb),
            # Only names os-traits knows; CPU feature traits (HW_CPU_X86_*) are left out
            # because libvirt lists only the features beyond the host's CPU model.
            traits=frozenset(traits & set(os_traits.get_traits())),
        )

    def _resources(self) -> HostResources:
        _arch, ram_mb, cpus, *_ = self._conn.getInfo()
        disk_gb = self.disk_gb or shutil.disk_usage(self.image_dir).total // 1024**3
        return HostResources(vcpus=cpus, ram_mb=ram_mb, disk_gb=disk_gb)

    def _spawn(self, spec: ServerSpec) -> DriverServer:
        if not _is_uuid(spec.server_id):
            raise InvalidArgument(
                f"server id {spec.server_id!r} must be a lowercase UUID: it is the domain's uuid",
                code="hostagent.invalid_server_id",
            )
        # Someone else's domain with this uuid is not ours to return: defineXML refuses it.
        with suppress(NotFound):
            return self._server(self._domain(spec.server_id))
        image = self._image_path(spec.image_ref)
        check_fits(spec, self._resources())
        domain = None
        try:
            domain = self._conn.defineXML(self._domain_xml(spec, image))
            domain.create()
            return self._server(domain)
        except libvirt.libvirtError as exc:
            # Leave nothing behind: a half-made server must not show up in list_servers.
            if domain is not None:
                with suppress(libvirt.libvirtError):
                    domain.destroy()  # in case it started before failing
                with suppress(libvirt.libvirtError):
                    domain.undefineFlags(UNDEFINE_FLAGS)
            raise driver_failed("spawn", spec.server_id, exc.get_error_message()) from None

    def _destroy(self, server_id: str) -> None:
        try:
            domain = self._domain(server_id)
        except NotFound:
            return
        if domain.isActive():
            domain.destroy()
        domain.undefineFlags(UNDEFINE_FLAGS)

    def _reboot(self, server_id: str, hard: bool) -> DriverServer:
        domain = self._domain(server_id)
        state = POWER_STATES.get(domain.state()[0], PowerState.NOSTATE)
        if not hard and state is not PowerState.RUNNING:
            raise driver_failed("soft reboot", server_id, f"it is {state}; use a hard reboot")
        if hard:
            # Like Nova: power off whatever state it is in, then boot again.
            if domain.isActive():
                domain.destroy()
            domain.create()
        else:
            # An ACPI request: it returns at once and the guest may ignore it.
            domain.reboot(0)
        return self._server(domain)

    def _request_shutdown(self, server_id: str) -> bool:
        """Ask a running guest to shut down; False if there is no one to ask."""
        domain = self._domain(server_id)
        if domain.state()[0] not in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
            return False  # off already, or paused and deaf to ACPI
        domain.shutdown()
        return True

    def _power_off_now(self, server_id: str) -> DriverServer:
        domain = self._domain(server_id)
        if domain.isActive():
            domain.destroy()
        return self._server(domain)

    def _power_on(self, server_id: str) -> DriverServer:
        domain = self._domain(server_id)
        state = domain.state()[0]
        if state == libvirt.VIR_DOMAIN_PAUSED:
            domain.resume()
        elif state == libvirt.VIR_DOMAIN_PMSUSPENDED:
            domain.pMWakeup(0)
        elif not domain.isActive():
            domain.create()
        return self._server(domain)

    def _list(self) -> list[DriverServer]:
        servers = []
        for domain in self._conn.listAllDomains():
            if domain.name().startswith(NAME_PREFIX) and _metadata(domain) is not None:
                # A domain undefined by someone since listAllDomains() is simply gone.
                with suppress(libvirt.libvirtError, NotFound):
                    servers.append(self._server(domain))
        return servers

    def _domain(self, server_id: str) -> libvirt.virDomain:
        """Our domain with this id, or server_not_found() (also for anyone else's)."""
        try:
            domain = self._conn.lookupByUUIDString(server_id) if _is_uuid(server_id) else None
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
            domain = None
        if domain is None or _metadata(domain) is None:
            raise server_not_found(server_id)
        return domain

    def _get(self, server_id: str) -> DriverServer:
        return self._server(self._domain(server_id))

    def _server(self, domain: libvirt.virDomain) -> DriverServer:
        state, max_kib, _kib, vcpus, _cpu_time = domain.info()
        meta = _metadata(domain)
        if meta is None:  # undefined by someone meanwhile
            raise server_not_found(domain.UUIDString())
        return DriverServer(
            server_id=domain.UUIDString(),
            name=meta.findtext("name", ""),
            power_state=POWER_STATES.get(state, PowerState.NOSTATE),
            vcpus=vcpus,
            ram_mb=max_kib // 1024,
            disk_gb=int(meta.findtext("disk_gb", "0")),
            image_ref=meta.findtext("image", ""),
        )

    def _image_path(self, image_ref: str) -> Path:
        if not image_ref or image_ref in (".", "..") or any(c in image_ref for c in "/\\\0"):
            raise InvalidArgument(
                f"image reference {image_ref!r} must be a plain file name, not a path",
                code="hostagent.invalid_image_ref",
            )
        path = self.image_dir / image_ref
        if not path.is_file():
            known = sorted(p.name for p in self.image_dir.glob("*") if p.is_file())
            raise image_not_found(image_ref, f"known: {', '.join(known[:10]) or 'none'}")
        return path

    def _domain_xml(self, spec: ServerSpec, image: Path) -> str:
        kind, arch = self._guest
        # Without ACPI, qemu guests cannot hear shutdown() and power_off always waits.
        features = "<acpi/><apic/>" if arch in ("x86_64", "i686") else ""
        # qemu refuses to guess formats; the operator's images are qcow2 or raw.
        with image.open("rb") as f:
            image_format = "qcow2" if f.read(4) == QCOW2_MAGIC else "raw"
        source = escape(str(image.resolve()), {"'": "&apos;"})
        # The disk is the shared base image, <transient/> so it is never written (see the
        # module docstring); shareBacking lets several servers boot from one file at once.
        return f"""\
<domain type='{kind}'>
  <name>{NAME_PREFIX}{spec.server_id}</name>
  <uuid>{spec.server_id}</uuid>
  <metadata>
    <s:server xmlns:s='{NAMESPACE}'>
      <s:name>{escape(spec.name)}</s:name>
      <s:image>{escape(spec.image_ref)}</s:image>
      <s:disk_gb>{spec.disk_gb}</s:disk_gb>
    </s:server>
  </metadata>
  <memory unit='MiB'>{spec.ram_mb}</memory>
  <vcpu>{spec.vcpus}</vcpu>
  <os><type arch='{arch}'>hvm</type></os>
  <features>{features}</features>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='{image_format}'/>
      <source file='{source}'/>
      <target dev='vda' bus='virtio'/>
      <transient shareBacking='yes'/>
    </disk>
    <serial type='pty'/>
    <console type='pty'/>
  </devices>
</domain>"""


@contextmanager
def _failures(action: str, server_id: str | None) -> Iterator[None]:
    """Turns libvirt errors into Stratus errors; server_id None for host-wide calls."""
    try:
        yield
    except libvirt.libvirtError as exc:
        detail = exc.get_error_message()
        if server_id is None:
            raise Internal(f"{action} failed on the host: {detail}", code=DRIVER_ERROR) from None
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise server_not_found(server_id) from None
        raise driver_failed(action, server_id, detail) from None


def _metadata(domain: libvirt.virDomain) -> ET.Element | None:
    try:
        return ET.fromstring(domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NAMESPACE))
    except libvirt.libvirtError:
        return None  # not ours (VIR_ERR_NO_DOMAIN_METADATA), or gone


def _is_uuid(server_id: str) -> bool:
    try:
        return str(uuid.UUID(server_id)) == server_id
    except ValueError:
        return False


def _version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"
