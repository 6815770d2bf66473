"""Drivers by name. A new driver is added here and to tests/drivers/test_conformance.py."""

from __future__ import annotations

from pathlib import Path

from services.common.config import FakeDriverSection, HostAgentSection
from services.hostagent.drivers.base import Capability, Driver, HostResources
from services.hostagent.drivers.fake import FakeDriver

DRIVERS = ("fake", "libvirt", "container", "redfish")


def make_driver(section: HostAgentSection, state_dir: Path) -> Driver:
    """The configured driver; state_dir is this host's own (drivers that keep state use it)."""
    if section.driver == "fake":
        return fake_driver(section.fake, state_file=state_dir / "fake-servers.json")
    if section.driver == "container":
        # Imported only when chosen: the podman client is an optional dependency.
        from services.hostagent.drivers.container_driver import ContainerDriver

        box = section.container
        return ContainerDriver(
            socket_url=box.socket_url,
            stop_timeout_s=box.stop_timeout_s,
            vcpus=box.vcpus,
            ram_mb=box.ram_mb,
            disk_gb=box.disk_gb,
        )
    if section.driver == "redfish":
        # Imported only when chosen: sushy is an optional dependency.
        from services.hostagent.drivers.redfish import RedfishDriver, load_enrolment

        metal = section.redfish
        return RedfishDriver(
            load_enrolment(metal.machines_file),
            state_dir,
            request_timeout_s=metal.request_timeout_s,
            power_timeout_s=metal.power_timeout_s,
            shutdown_timeout_s=metal.shutdown_timeout_s,
        )
    # Imported only when chosen: libvirt-python is an optional dependency.
    from services.hostagent.drivers.libvirt_driver import LibvirtDriver

    virt = section.libvirt
    return LibvirtDriver(uri=virt.uri, image_dir=virt.image_dir, disk_gb=virt.disk_gb)


def fake_driver(fake: FakeDriverSection, state_file: Path | None) -> FakeDriver:
    """A fake host of the configured size; state_file None keeps its servers in memory
    (the fleet simulator's hosts, which die with their process)."""
    return FakeDriver(
        HostResources(vcpus=fake.vcpus, ram_mb=fake.ram_mb, disk_gb=fake.disk_gb),
        images=frozenset(i.strip() for i in fake.images.split(",") if i.strip()),
        delay_s=fake.delay_s,
        failure_rate=fake.failure_rate,
        seed=fake.seed,
        without=frozenset(Capability(c.strip()) for c in fake.without.split(",") if c.strip()),
        state_file=state_file,
    )
