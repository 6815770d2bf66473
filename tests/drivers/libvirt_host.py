"""A libvirt host for tests: libvirt's in-process test driver and a `cirros` image.

No libvirtd is needed. `test:///<dir>/node.xml` gives each connection its own
private, empty host of the size asked for; `test:///default` is one host shared by
every connection in the process and already runs a domain named `test`.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

from services.hostagent.drivers.base import HostResources

if TYPE_CHECKING:
    from services.hostagent.drivers.libvirt_driver import LibvirtDriver

# The fake driver's default host, so one flavor fits (or does not) on both.
DEFAULT_HOST = HostResources(vcpus=16, ram_mb=65536, disk_gb=1000)
# The first bytes of a qcow2 file, so the driver declares the format a real cirros has.
IMAGE_BYTES = b"QFI\xfb" + bytes(1020)
NODE_XML = """\
<node>
  <cpu>
    <mhz>2600</mhz><model>x86_64</model>
    <nodes>1</nodes><sockets>1</sockets><cores>{vcpus}</cores><threads>1</threads>
    <active>{vcpus}</active>
  </cpu>
  <memory>{ram_kib}</memory>
</node>
"""


def require_libvirt() -> ModuleType:
    """libvirt-python, or skip the caller (at module level too); in CI, fail instead."""
    try:
        import libvirt
    except ImportError as exc:
        reason = (
            f"libvirt-python is missing ({exc}): install libvirt-dev and pkg-config, then make venv"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI must test the libvirt driver)", pytrace=False)
        pytest.skip(reason, allow_module_level=True)
    return libvirt


def make_libvirt_driver(
    tmp_path: Path, uri: str | None = None, host: HostResources = DEFAULT_HOST
) -> LibvirtDriver:
    """A driver with the image `cirros` in tmp_path/images and host.disk_gb of disk.

    Without a uri it gets a private host of host.vcpus and host.ram_mb, written to
    tmp_path/node.xml; with one (test:///default), the URI decides them.
    Close the driver when done.
    """
    require_libvirt()
    from services.hostagent.drivers.libvirt_driver import LibvirtDriver

    image_dir = tmp_path / "images"
    image_dir.mkdir(exist_ok=True)
    (image_dir / "cirros").write_bytes(IMAGE_BYTES)
    if uri is None:
        node = tmp_path / "node.xml"
        node.write_text(NODE_XML.format(vcpus=host.vcpus, ram_kib=host.ram_mb * 1024))
        uri = f"test://{node}"
    return LibvirtDriver(uri=uri, image_dir=image_dir, disk_gb=host.disk_gb)
