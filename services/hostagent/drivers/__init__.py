"""Drivers by name. A new driver is added here and to tests/drivers/test_conformance.py."""

from __future__ import annotations

from services.common.config import HostAgentSection
from services.hostagent.drivers.base import Capability, Driver, HostResources

DRIVERS = ("fake", "libvirt")


def make_driver(section: HostAgentSection) -> Driver:
    if section.driver == "fake":
        from services.hostagent.drivers.fake import FakeDriver

        fake = section.fake
        return FakeDriver(
            HostResources(vcpus=fake.vcpus, ram_mb=fake.ram_mb, disk_gb=fake.disk_gb),
            images=frozenset(i.strip() for i in fake.images.split(",") if i.strip()),
            delay_s=fake.delay_s,
            failure_rate=fake.failure_rate,
            seed=fake.seed,
            without=frozenset(Capability(c.strip()) for c in fake.without.split(",") if c.strip()),
        )
    # Imported only when chosen: libvirt-python is an optional dependency.
    from services.hostagent.drivers.libvirt_driver import LibvirtDriver

    virt = section.libvirt
    return LibvirtDriver(uri=virt.uri, image_dir=virt.image_dir, disk_gb=virt.disk_gb)
