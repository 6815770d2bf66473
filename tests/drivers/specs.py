"""Server specs for driver tests."""

from __future__ import annotations

import uuid

from services.hostagent.drivers.base import ServerSpec


def spec(**overrides) -> ServerSpec:
    """A small server of a new id booting `cirros`; any field may be overridden."""
    values = dict(
        server_id=str(uuid.uuid4()),
        name="web-1",
        vcpus=1,
        ram_mb=512,
        disk_gb=1,
        image_ref="cirros",
    )
    values.update(overrides)
    return ServerSpec(**values)
